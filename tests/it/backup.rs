//! `backup`: snapshots that verify, restore and prune; refusals of tampered
//! backups; a backup through a running `serve`; a backup killed midway.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::peers::{free_port, get, Reaped};
use crate::support::*;

fn spec(dir: &Path, extra: &str) {
    write(
        dir,
        "b.yaml",
        &format!(
            "version: 1\nname: b\nstore: {{path: b.duckdb, retention: 3650d}}\nbackup: {{dir: backups, keep: 2}}\n\
             sources:\n  s: {{type: simulate, interval: 1s, seed: 2, signals: {{\n\
             \x20   t.a: {{shape: sine, mean: 20, amplitude: 2, period: 10m}}, t.b: {{shape: random_walk, mean: 5}}}}}}\n{extra}"
        ),
    );
}

fn run(dir: &Path, args: &[&str]) -> Out {
    let mut all = vec!["backup", "b.yaml"];
    all.extend_from_slice(args);
    eg(all).dir(dir).run()
}

#[test]
fn a_backup_verifies_restores_and_prunes() {
    let dir = tmp();
    let d = dir.path();
    spec(d, "");
    eg(["acquire", "b.yaml", "--duration", "1h", "--no-progress", "-o", "/dev/null"]).dir(d).run().code(0);
    let db = d.join("b.duckdb");
    let stored = query_i64(&db, "SELECT count(*) FROM readings");
    assert_eq!(stored, 7200);

    let made = run(d, &[]);
    // Every reading, and the log of the commits that stored them.
    let commits = query_i64(&db, "SELECT count(*) FROM commits");
    assert!(commits >= 1);
    made.code(0).stderr_has(&format!("{} rows", 7200 + commits));
    let id = made.stdout.trim().to_string();
    let list = run(d, &["--list"]);
    let l = list.lines();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["id"], id.as_str());
    let readings = l[0]["tables"].as_array().unwrap().iter().find(|t| t["name"] == "readings").unwrap();
    assert_eq!(readings["rows"], 7200);
    assert!(d.join("backups").join(&id).join("readings.parquet").exists());
    run(d, &["--verify"]).code(0).stderr_has(&format!("{id}: ok"));

    // Restore into a new path reproduces the store; never over an existing one.
    let to = d.join("restored.duckdb");
    run(d, &["--restore", &id, "--to", to.to_str().unwrap()]).code(0);
    assert_eq!(query_i64(&to, "SELECT count(*) FROM readings"), stored);
    assert_eq!(
        query_i64(&to, "SELECT sum(hash(ts, channel, value)) % 1000000007 FROM readings"),
        query_i64(&db, "SELECT sum(hash(ts, channel, value)) % 1000000007 FROM readings")
    );
    run(d, &["--restore", &id, "--to", db.to_str().unwrap()]).code(1).stderr_has("exists");

    // Tampering: a changed byte, a manifest naming a path outside, a link.
    let second = run(d, &[]).stdout.trim().to_string();
    let f = d.join("backups").join(&second).join("anomalies.parquet");
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&f, bytes).unwrap();
    run(d, &["--verify", &second]).code(1).stderr_has("does not match its checksum");
    let evil = d.join("backups/20990101T000000Z");
    std::fs::create_dir_all(&evil).unwrap();
    let manifest = std::fs::read_to_string(d.join("backups").join(&id).join("manifest.json")).unwrap();
    std::fs::write(evil.join("manifest.json"), manifest.replace("\"readings.parquet\"", "\"../../b.duckdb\"")).unwrap();
    run(d, &["--verify", "20990101T000000Z"]).code(1).stderr_has("not a file of this backup");
    std::fs::write(evil.join("manifest.json"), &manifest).unwrap();
    for t in ["anomalies", "alerts", "state", "commits"] {
        std::fs::copy(d.join("backups").join(&id).join(format!("{t}.parquet")), evil.join(format!("{t}.parquet")))
            .unwrap();
    }
    std::os::unix::fs::symlink(d.join("backups").join(&id).join("readings.parquet"), evil.join("readings.parquet"))
        .unwrap();
    run(d, &["--verify", "20990101T000000Z"]).code(1).stderr_has("not a regular file");
    run(d, &["--restore", "20990101T000000Z", "--to", d.join("x.duckdb").to_str().unwrap()]).code(1);
    assert!(!d.join("x.duckdb").exists());
    run(d, &["--restore", "../backups", "--to", d.join("y.duckdb").to_str().unwrap()])
        .code(1)
        .stderr_has("not a backup id");

    run(d, &["--set", "backup.format=duckdb"]).code(2).stderr_has("only `format: parquet`");
    // Keep 2: the oldest goes.
    run(d, &["--prune"]).code(0).stderr_has(&format!("removed {id}"));
    assert_eq!(run(d, &["--list"]).lines().len(), 2);
}

#[test]
fn a_backup_killed_midway_leaves_nothing_under_a_final_name() {
    let dir = tmp();
    let d = dir.path();
    spec(d, "");
    eg(["acquire", "b.yaml", "--duration", "3d", "--no-progress", "-o", "/dev/null"]).dir(d).run().code(0);
    let started = || {
        Command::new(env!("CARGO_BIN_EXE_edgeguard"))
            .args(["backup", "b.yaml"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    for delay in [50, 150] {
        let mut child = started();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Once more, killed as soon as its folder exists (however long a loaded
    // machine takes to get there): one kill surely lands midway.
    let mut child = started();
    wait_until("the backup's folder", 30, || {
        std::fs::read_dir(d.join("backups")).is_ok_and(|mut entries| entries.next().is_some())
    });
    let _ = child.kill();
    let _ = child.wait();
    // Whatever finished is whole; whatever did not is a .partial- folder.
    for e in std::fs::read_dir(d.join("backups")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            run(d, &["--verify", &name]).code(0);
        }
    }
    run(d, &["--prune", "--set", "backup.keep=10"]).code(0);
    let left: Vec<String> = std::fs::read_dir(d.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn metric(base: &str, token: &str, name: &str) -> u64 {
    let (status, text) = get(&format!("{base}/metrics"), Some(token));
    assert_eq!(status, 200, "{text}");
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

/// While serve holds the store, `backup` asks serve; the backup's counts lie
/// between what was stored before and what was read after. Another holder
/// gets exit 75 with its PID.
#[test]
fn a_backup_during_serve_goes_through_its_api() {
    let dir = tmp();
    let d = dir.path();
    let port = free_port();
    let token = "backup-token-0123456789";
    spec(d, &format!("serve: {{listen: \"127.0.0.1:{port}\", token: {{env: EG_TOKEN}}}}\n"));
    let mut serve = Reaped(Some(
        Command::new(env!("CARGO_BIN_EXE_edgeguard"))
            .args(["serve", "b.yaml", "--set", "store.flush=200ms"])
            .current_dir(d)
            .env("EG_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let base = format!("http://127.0.0.1:{port}");
    std::thread::sleep(Duration::from_secs(3));
    let before = metric(&base, token, "edgeguard_store_rows_total");
    let out = eg(["backup", "b.yaml"]).dir(d).cmd_env("EG_TOKEN", token).run();
    let after = metric(&base, token, "edgeguard_readings_total");
    out.code(0);
    let id = out.stdout.trim().to_string();
    let m = run(d, &["--verify", &id]);
    m.code(0);
    let list = run(d, &["--list"]).lines();
    let rows = list[0]["tables"].as_array().unwrap().iter().find(|t| t["name"] == "readings").unwrap()["rows"]
        .as_u64()
        .unwrap();
    assert!(before > 0 && before <= rows && rows <= after, "{before} ≤ {rows} ≤ {after}");
    assert_eq!(serve.terminate().0, Some(0));
    let to = d.join("r.duckdb");
    run(d, &["--restore", &id, "--to", to.to_str().unwrap()]).code(0);
    assert_eq!(query_i64(&to, "SELECT count(*) FROM readings") as u64, rows);

    // A holder that is not serve: 75, with its PID.
    let mut holder = Reaped(Some(
        Command::new(env!("CARGO_BIN_EXE_edgeguard"))
            .args(["acquire", "b.yaml", "-o", "/dev/null", "--no-progress"])
            .current_dir(d)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    std::thread::sleep(Duration::from_millis(1500));
    let mut no_serve = std::fs::read_to_string(d.join("b.yaml")).unwrap();
    no_serve = no_serve.lines().filter(|l| !l.starts_with("serve:")).collect::<Vec<_>>().join("\n") + "\n";
    write(d, "b.yaml", &no_serve);
    let out = run(d, &[]);
    let pid = holder.pid();
    holder.terminate();
    out.code(75).stderr_has(&format!("PID {pid}"));
}

/// `backup.schedule`: serve makes the backups itself (here every minute).
#[test]
fn serve_makes_scheduled_backups() {
    let dir = tmp();
    let d = dir.path();
    let port = free_port();
    spec(d, &format!("serve: {{listen: \"127.0.0.1:{port}\"}}\n"));
    let text =
        std::fs::read_to_string(d.join("b.yaml")).unwrap().replace("keep: 2}", "keep: 2, schedule: \"* * * * *\"}");
    write(d, "b.yaml", &text);
    let mut serve = Reaped(Some(
        Command::new(env!("CARGO_BIN_EXE_edgeguard"))
            .args(["serve", "b.yaml"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let started = std::time::Instant::now();
    let mut made = Vec::new();
    while made.is_empty() && started.elapsed() < Duration::from_secs(75) {
        std::thread::sleep(Duration::from_millis(500));
        made = std::fs::read_dir(d.join("backups"))
            .map(|it| {
                it.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
    }
    assert_eq!(serve.terminate().0, Some(0));
    assert_eq!(made.len(), 1, "no scheduled backup within 75 s");
    run(d, &["--verify", &made[0]]).code(0);
}
