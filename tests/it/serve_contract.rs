//! `serve`'s OpenAPI document against what serve does: schemathesis
//! (PyPI, installed by scripts/test) generates requests from the served
//! document and checks every answer — no 5xx, no status code or content
//! type the document does not list, responses that match their schemas,
//! requests that violate the schema refused, 401 where a token is needed.

use std::path::Path;
use std::process::Command;

use crate::peers::{get, python};
use crate::serve::{spec, Daemon, TOKEN};
use crate::support::*;

/// Runs schemathesis on `doc` (a URL or a file) against `base`; its output.
/// `positive_data_acceptance` is left out: free-form string parameters
/// (`since`, `sql`) are refused with a documented 400 when they do not
/// parse, which that check counts as a failure. `/api/v1/reload` is left
/// out with the stream: each call restarts the pipeline under the other
/// operations being checked (`reload.rs` checks it through the binary).
fn schemathesis(dir: &Path, doc: &str, base: &str, header: Option<String>) -> String {
    let exe = Path::new(&python()).with_file_name("schemathesis");
    let mut cmd = Command::new(&exe);
    cmd.args(["run", doc, "--url", base, "--exclude-path", "/api/v1/stream", "--exclude-path", "/api/v1/reload"])
        .args(["--max-examples", "25", "--seed", "42", "--request-timeout", "20", "--no-color"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .current_dir(dir);
    if let Some(h) = header {
        cmd.args(["-H", &h]);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{}: {e} (scripts/test installs schemathesis)", exe.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    // It did test something: every operation but the stream and the reload.
    let tested =
        text.lines().find_map(|l| l.trim().strip_prefix("Tested: ")).and_then(|n| n.trim().parse::<u32>().ok());
    assert!(tested >= Some(12), "tested {tested:?} operations:\n{text}");
    text
}

#[test]
fn the_openapi_document_holds_against_schemathesis_with_and_without_a_token() {
    // A serve with a token: checked with it and without it (every operation
    // that needs it must answer a documented 401).
    let dir = tmp();
    let d = dir.path();
    spec(d);
    let daemon = Daemon::start(d, "s.yaml", &[]);
    let (status, doc) = get(&format!("{}/api/v1/openapi.json", daemon.base), Some(TOKEN));
    assert_eq!(status, 200);
    write(d, "openapi.json", &doc);
    schemathesis(d, "openapi.json", &daemon.base, Some(format!("Authorization: Bearer {TOKEN}")));
    schemathesis(d, "openapi.json", &daemon.base, None);
    drop(daemon);

    // A serve without a token (loopback): its document asks for none.
    let open = tmp();
    let o = open.path();
    write(
        o,
        "o.yaml",
        "version: 1\nname: o\nsources:\n  s: {type: simulate, signals: {a.b: {shape: constant, mean: 3}}}\nstore: {path: o.duckdb}\n",
    );
    let daemon = Daemon::start(o, "o.yaml", &[]);
    let (_, doc) = get(&format!("{}/api/v1/openapi.json", daemon.base), None);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["security"], serde_json::json!([]), "a tokenless serve needs no token");
    schemathesis(o, &format!("{}/api/v1/openapi.json", daemon.base), &daemon.base, None);
}
