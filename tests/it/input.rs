//! `--input`: NDJSON and CSV, the malformed corpus, and stored counts.

use crate::support::*;

const SPEC: &str = "version: 1\nname: t\nchannels:\n  \"plant.*\": {range: [-1000, 1000]}\n";

fn good(i: usize) -> String {
    format!("{{\"kind\":\"reading\",\"ts\":\"2026-11-22T00:00:{:02}.{:03}Z\",\"channel\":\"plant.c{}\",\"value\":{}.5,\"quality\":\"good\",\"source\":\"plc0\"}}", i / 1000 % 60, i % 1000, i % 7, i)
}

/// Every kind of broken line, among good ones: exact counts, no panic.
#[test]
fn the_malformed_corpus() {
    let dir = tmp();
    let spec = write(dir.path(), "spec.yaml", SPEC);
    let mut data: Vec<u8> = Vec::new();
    let mut good_lines = 0;
    let push_good = |data: &mut Vec<u8>, n: &mut usize| {
        data.extend_from_slice(good(*n).as_bytes());
        data.push(b'\n');
        *n += 1;
    };
    data.extend_from_slice(b"\xEF\xBB\xBF"); // a BOM before the first (good) line
    push_good(&mut data, &mut good_lines);
    let bad: Vec<Vec<u8>> = vec![
        b"{\"kind\":\"reading\",\"channel\":\"plant.a\",\"val".to_vec(), // truncated
        b"{\"channel\":\"plant.\xff\xfe\",\"value\":1}".to_vec(),        // invalid UTF-8
        b"{\"channel\":\"plant.a\",\"value\":1}\x00".to_vec(),           // NUL
        b"{\"channel\":\"plant.a\",\"value\":NaN}".to_vec(),             // NaN
        b"{\"channel\":\"plant.a\",\"value\":Infinity}".to_vec(),
        format!("{{\"channel\":\"plant.a\",\"value\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(), // 10k-deep
        format!("{{\"channel\":\"plant.a\",\"value\":1,\"pad\":\"{}\"}}", "x".repeat(16 << 20)).into_bytes(), // 16 MiB
        b"{\"channel\":\"plant.a\",\"value\":\"12.5\"}".to_vec(), // wrong type
        b"{\"channel\":42,\"value\":1}".to_vec(),
        b"{\"channel\":\"plant.a\",\"value\":1,\"ts\":\"yesterday\"}".to_vec(),
        b"{\"channel\":\"plant.a\",\"value\":1,\"quality\":\"great\"}".to_vec(),
        b"{\"value\":1}".to_vec(), // no channel
        b"[1,2,3]".to_vec(),
        b"not json at all".to_vec(),
    ];
    for b in &bad {
        data.extend_from_slice(b);
        data.push(b'\n');
        push_good(&mut data, &mut good_lines);
    }
    data.extend_from_slice(b"\n   \n"); // blank lines are skipped, not rejected
    data.extend_from_slice(good(good_lines).as_bytes()); // no trailing newline
    good_lines += 1;
    let input = write(dir.path(), "corpus.ndjson", "");
    std::fs::write(&input, &data).unwrap();
    let db = dir.path().join("s.duckdb");

    let out = eg([
        "acquire".as_ref(),
        spec.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--store".as_ref(),
        db.as_os_str(),
        "--store-input".as_ref(),
    ])
    .measure_rss()
    .run();
    out.code(0);
    assert_eq!(out.lines().len(), good_lines, "printed readings");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), good_lines as i64);
    out.stderr_has(&format!("{} of {} lines rejected", bad.len(), good_lines + bad.len() + 2));
    out.stderr_has("line 2: EOF while parsing");
    out.stderr_has("line 28: expected ident");
    out.stderr_has("longer than the limit");
    assert!(out.max_rss_kib < 150 * 1024, "peak RSS {} KiB", out.max_rss_kib);

    // --strict turns rejections into exit 65 (after storing the good lines).
    let db2 = dir.path().join("s2.duckdb");
    let out = eg([
        "acquire".as_ref(),
        spec.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--store".as_ref(),
        db2.as_os_str(),
        "--store-input".as_ref(),
        "--strict".as_ref(),
        "-q".as_ref(),
    ])
    .run();
    out.code(65);
    assert_eq!(query_i64(&db2, "SELECT count(*) FROM readings"), good_lines as i64);
}

#[test]
fn input_records_are_stored_only_with_store_input() {
    let dir = tmp();
    let spec = write(dir.path(), "spec.yaml", SPEC);
    let db = dir.path().join("s.duckdb");
    let data: String = (0..10).map(|i| good(i) + "\n").collect();
    let out = eg([
        "acquire".as_ref(),
        spec.as_os_str(),
        "--input".as_ref(),
        "-".as_ref(),
        "--store".as_ref(),
        db.as_os_str(),
    ])
    .stdin(data.clone())
    .run();
    out.code(0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), 0);
    let out = eg([
        "acquire".as_ref(),
        spec.as_os_str(),
        "--input".as_ref(),
        "-".as_ref(),
        "--store".as_ref(),
        db.as_os_str(),
        "--store-input".as_ref(),
    ])
    .stdin(data)
    .run();
    out.code(0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM readings"), 10);
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM readings WHERE ts = '2026-11-22T00:00:00.009Z'::TIMESTAMPTZ AND value = 9.5"
        ),
        1
    );
}

#[test]
fn csv_input_and_csv_output() {
    let out = eg([
        "acquire",
        "pipelines/input-only.yaml",
        "--input",
        "examples/readings.csv",
        "--input-format",
        "csv",
        "--no-store",
        "--format",
        "csv",
    ])
    .run();
    out.code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "kind,ts,channel,value,unit,quality,flags,source");
    assert_eq!(lines[1], "reading,2026-11-22T10:00:00.000Z,plant.l1.temp,21.5,degC,good,,logger");
    assert_eq!(lines[3], "reading,2026-11-22T10:00:01.000Z,plant.l1.pres,55,bar,bad,out_of_range,logger");
}

#[test]
fn other_kinds_pass_through_and_only_filters() {
    let out = eg(["acquire", "pipelines/input-only.yaml", "--input", "examples/readings.ndjson", "--no-store"]).run();
    out.code(0);
    let kinds: Vec<String> = out.lines().iter().map(|l| l["kind"].as_str().unwrap().to_string()).collect();
    assert!(kinds.contains(&"anomaly".to_string()));
    let out = eg([
        "acquire",
        "pipelines/input-only.yaml",
        "--input",
        "examples/readings.ndjson",
        "--no-store",
        "--only",
        "anomaly",
    ])
    .run();
    out.code(0);
    assert_eq!(out.lines().len(), 1);
    eg([
        "acquire",
        "pipelines/input-only.yaml",
        "--input",
        "examples/readings.ndjson",
        "--no-store",
        "--only",
        "bogus",
    ])
    .run()
    .code(2);
}

#[test]
fn a_gap_in_the_input_becomes_one_stale_reading() {
    let out = eg([
        "acquire",
        "pipelines/input-only.yaml",
        "--input",
        "examples/readings.ndjson",
        "--no-store",
        "--fail-on",
        "bad",
    ])
    .run();
    out.code(3);
    let stale: Vec<_> = out
        .lines()
        .into_iter()
        .filter(|l| l["flags"].as_array().is_some_and(|f| f.iter().any(|f| f == "stale")))
        .collect();
    assert_eq!(stale.len(), 1, "{}", out.stdout);
    assert_eq!(stale[0]["ts"], "2026-11-22T10:01:03.000Z");
    assert_eq!(stale[0]["value"], serde_json::Value::Null);
}

/// Progress by bytes on a terminal (a pty from `script`); none on a pipe.
#[test]
fn progress_shows_on_a_terminal_only() {
    let dir = tmp();
    let data: String = (0..50_000).map(|i| good(i) + "\n").collect();
    let input = write(dir.path(), "big.ndjson", &data);
    let cmd = format!(
        "{} acquire pipelines/input-only.yaml --input {} --no-store --output /dev/null",
        bin().display(),
        input.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(repo())
        .output()
        .expect("script(1) from bsdutils");
    assert_eq!(out.status.code(), Some(0));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(
        tty.contains("reading") && tty.contains("100%"),
        "no progress bar on the terminal:\n{}",
        &tty[..tty.len().min(2000)]
    );
    let piped = eg([
        "acquire".as_ref(),
        "pipelines/input-only.yaml".as_ref(),
        "--input".as_ref(),
        input.as_os_str(),
        "--no-store".as_ref(),
    ])
    .run();
    piped.code(0);
    assert!(!piped.stderr.contains('%'), "a bar on a pipe: {}", piped.stderr);
}

/// `--count N` takes the first N records of an input; `--once` and
/// `--duration` make no sense with one and are refused.
#[test]
fn count_bounds_an_input_and_once_is_refused() {
    let out = eg([
        "acquire",
        "pipelines/input-only.yaml",
        "--input",
        "examples/readings.ndjson",
        "--no-store",
        "--count",
        "3",
    ])
    .run();
    out.code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["ts"], "2026-11-22T10:00:01.000Z");
    eg(["acquire", "pipelines/input-only.yaml", "--input", "examples/readings.ndjson", "--once"]).run().code(2);
    eg(["acquire", "pipelines/input-only.yaml", "--input", "-", "--duration", "1m"]).run().code(2);
}
