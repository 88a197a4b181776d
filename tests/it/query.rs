//! `edgeguard query`: read-only SQL on a store file, and through `serve`'s
//! `POST /api/v1/query` while serve holds the file; DuckDB refuses writes
//! either way.

use std::time::Duration;

use crate::peers::{client, send};
use crate::serve::{spec, Daemon, TOKEN};
use crate::support::*;

const COUNT: &str = "SELECT channel, count(*) AS n FROM readings GROUP BY channel ORDER BY channel";

fn query(dir: &std::path::Path, extra: &[&str]) -> Out {
    let mut args = vec!["query", "s.yaml"];
    args.extend_from_slice(extra);
    eg(args).dir(dir).cmd_env("EG_TOKEN", TOKEN).run()
}

#[test]
fn query_reads_a_store_file_read_only() {
    let dir = tmp();
    let d = dir.path();
    spec(d);
    eg(["acquire", "s.yaml", "--duration", "30s", "--format", "ndjson"]).dir(d).run().code(0);
    let out = query(d, &[COUNT]);
    out.code(0);
    let rows = out.lines();
    assert_eq!(rows.len(), 5, "{}", out.stdout);
    assert_eq!(rows[0]["channel"], "boiler.flow");
    assert!(rows.iter().all(|r| r["n"].as_i64() > Some(10)), "{}", out.stdout);
    let csv = query(d, &["SELECT ts, channel, value FROM readings ORDER BY ts, channel", "--format", "csv"]);
    csv.code(0);
    assert!(csv.stdout.starts_with("ts,channel,value\n2026-01-01T00:00:"), "{}", csv.stdout);
    let table = query(d, &["SELECT 1 AS one, 'x' AS two", "--format", "table"]);
    assert_eq!(table.stdout, "one  two\n1    x\n");

    // The row limit cuts the answer and says so.
    let cut = query(d, &["FROM readings", "--limit", "3"]);
    cut.code(0).stderr_has("stopped at 3 rows (--limit)");
    assert_eq!(cut.lines().len(), 3);

    // Writes are refused by DuckDB (77), bad SQL is a usage error (2).
    for write in ["DELETE FROM readings", "COMMIT; DELETE FROM readings", "DROP TABLE readings", "SET threads = 4"] {
        query(d, &[write]).code(77).stderr_has("refused");
    }
    query(d, &["SELECT nope FROM readings"]).code(2).stderr_has("nope");
    assert_eq!(query(d, &[COUNT]).lines(), rows, "nothing was written");
    query(d, &[COUNT, "--store", "missing.duckdb"]).code(66).stderr_has("no store at missing.duckdb");
    query(d, &["SELECT count(*) FROM range(100000000000)", "--timeout", "300ms"]).code(1).stderr_has("interrupted");
}

#[test]
fn query_goes_through_serve_while_it_holds_the_store() {
    let dir = tmp();
    let d = dir.path();
    spec(d);
    let daemon = Daemon::start(d, "s.yaml", &[]);
    let listen = format!("serve.listen={}", daemon.base.trim_start_matches("http://"));
    std::thread::sleep(Duration::from_millis(2500));
    let via = |sql: &str, extra: &[&str]| {
        let mut args = vec![sql, "--set", &listen];
        args.extend_from_slice(extra);
        query(d, &args)
    };
    let out = via(COUNT, &[]);
    out.code(0);
    let rows = out.lines();
    assert!(rows.len() >= 5 && rows.iter().all(|r| r["n"].as_i64() > Some(0)), "{}", out.stdout);
    let cut = via("SELECT ts, channel FROM readings", &["--limit", "2"]);
    cut.code(0).stderr_has("stopped at 2 rows (--limit)");
    assert_eq!(cut.lines().len(), 2);
    via("DELETE FROM readings", &[]).code(77).stderr_has("refused");
    via("INSERT INTO meta VALUES ('x', 'y')", &[]).code(77).stderr_has("refused");
    via("SELECT nope FROM readings", &[]).code(2).stderr_has("nope");
    via(COUNT, &["--limit", "200000"]).code(2).stderr_has("`limit` is 1 to 100000");
    let wrong =
        eg(["query", "s.yaml", COUNT, "--set", &listen]).dir(d).cmd_env("EG_TOKEN", "not-the-token-0123456789").run();
    wrong.code(77).stderr_has("401");
    // Without serve (another holder), it is a locked store: retry later.
    let elsewhere = ["--set", "serve.listen=127.0.0.1:9"];
    query(d, &[COUNT, elsewhere[0], elsewhere[1]]).code(75).stderr_has("not a `serve` of this spec");

    // The endpoint itself: token, body, limits.
    let url = format!("{}/api/v1/query", daemon.base);
    let post = |body: &str, token: Option<&str>| send(client().post(&url).body(body.to_string()), token);
    assert_eq!(post(r#"{"sql":"SELECT 1"}"#, None).0, 401);
    let (status, body) = post(r#"{"sql":"SELECT 1 AS x, 'a' AS y"}"#, Some(TOKEN));
    assert_eq!((status, body.as_str()), (200, r#"{"columns":["x","y"],"rows":[{"x":1,"y":"a"}],"truncated":false}"#));
    let (status, body) = post(r#"{"sql":"UPDATE readings SET value = 0"}"#, Some(TOKEN));
    assert_eq!(status, 403, "{body}");
    // Serve's database reads its own tables, not other files on the gateway.
    std::fs::write(d.join("secret.txt"), "hunter2\n").unwrap();
    let read_file = format!(r#"{{"sql":"SELECT content FROM read_text('{}')"}}"#, d.join("secret.txt").display());
    let (status, body) = post(&read_file, Some(TOKEN));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Permission Error") && !body.contains("hunter2"), "{body}");
    via("SELECT * FROM read_csv('/etc/passwd')", &[]).code(77).stderr_has("refused");
    assert_eq!(post(r#"{"sql":"SELECT 1","limit":0}"#, Some(TOKEN)).0, 400);
    assert_eq!(post(r#"{"sql":"SELECT 1","timeout":"1h"}"#, Some(TOKEN)).0, 400);
    assert_eq!(post(r#"{"query":"SELECT 1"}"#, Some(TOKEN)).0, 400);
    assert_eq!(post("not json", Some(TOKEN)).0, 400);
    let slow = r#"{"sql":"SELECT count(*) FROM range(100000000000)","timeout":"300ms"}"#;
    let (status, body) = post(slow, Some(TOKEN));
    assert_eq!(status, 408, "{body}");
    // serve kept running and storing.
    assert!(
        via(COUNT, &[]).lines().iter().map(|r| r["n"].as_i64().unwrap()).sum::<i64>()
            >= rows.iter().map(|r| r["n"].as_i64().unwrap()).sum::<i64>()
    );
}
