//! Serial-line instruments through a socat pseudo-terminal pair: torn
//! lines, CRLF, invalid UTF-8, an over-long line, and the device going away
//! and coming back.

use std::io::Write;
use std::time::Duration;

use crate::peers::*;
use crate::support::*;

fn write_pty(path: &std::path::Path, chunks: &[(&[u8], u64)]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for (bytes, pause_ms) in chunks {
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(*pause_ms));
    }
}

#[test]
fn lines_rejections_and_a_device_that_goes_away_and_comes_back() {
    let dir = tmp();
    let pty = PtyPair::new(dir.path());
    let spec = format!(
        "version: 1\nname: t\nsources:\n  lab:\n    type: serial\n    device: {}\n    baud: 115200\n    format: regex\n    pattern: 'T=(?P<temp>-?[0-9.]+);H=(?P<hum>[0-9.]+)'\n    max_line: 64\n    channels: {{temp: lab.temp, hum: lab.hum}}\n",
        pty.a.display()
    );
    write(dir.path(), "s.yaml", &spec);
    let b = pty.b.clone();
    let dir_path = dir.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        let long = vec![b'X'; 100_000];
        write_pty(
            &b,
            &[
                (b"T=21.5;H=40\n", 50),
                (b"T=22.", 500), // half a line, then a pause
                (b"0;H=41\r\n", 50),
                (b"\xff\xfeT=1;H=2\n", 50),
                (&long, 0),
                (b"\nT=23;H=42\n", 300),
            ],
        );
        // The device goes away: socat ends when its side closes.
        drop(pty);
        std::thread::sleep(Duration::from_millis(1500));
        let pty = PtyPair::new(&dir_path);
        std::thread::sleep(Duration::from_millis(1500));
        write_pty(&pty.b, &[(b"T=24;H=43\n", 1500)]);
        pty
    });
    let out = eg(["acquire", "s.yaml", "--duration", "7s", "--no-store"]).dir(dir.path()).measure_rss().run();
    let _pty = writer.join().unwrap();
    out.code(0);
    let values = |ch: &str| -> Vec<Option<f64>> {
        out.lines().iter().filter(|r| r["channel"] == ch).map(|r| r["value"].as_f64()).collect()
    };
    let good = |ch: &str| -> Vec<f64> { values(ch).into_iter().flatten().collect() };
    assert_eq!(good("lab.temp"), vec![21.5, 22.0, 23.0, 24.0], "{}", out.stdout);
    assert_eq!(good("lab.hum"), vec![40.0, 41.0, 42.0, 43.0]);
    // The unplugging shows as a bad reading of each channel, flagged disconnected.
    let gone: Vec<_> =
        out.lines().into_iter().filter(|r| r["quality"] == "bad" && r["flags"][0] == "disconnected").collect();
    assert!(gone.len() >= 2, "{}", out.stdout);
    out.stderr_has("2 rejected (1 too long)");
    out.stderr_has("not UTF-8");
    assert!(out.max_rss_kib < 60 * 1024, "peak RSS {} KiB", out.max_rss_kib);
}

#[test]
fn once_reads_until_every_channel_has_a_value() {
    let dir = tmp();
    let pty = PtyPair::new(dir.path());
    let spec = format!(
        "version: 1\nname: t\nsources:\n  meter:\n    type: serial\n    device: {}\n    format: csv\n    channels: {{\"1\": m.volts, \"2\": m.amps}}\n    timestamp: \"0\"\n",
        pty.a.display()
    );
    write(dir.path(), "s.yaml", &spec);
    let b = pty.b.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        write_pty(&b, &[(b"2026-05-01T10:00:00Z,230.5,1.25\n", 2000)]);
    });
    let out = eg(["acquire", "s.yaml", "--once", "--no-store", "--timeout", "5s"]).dir(dir.path()).run();
    writer.join().unwrap();
    out.code(0);
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!(lines[0]["ts"], "2026-05-01T10:00:00.000Z");
    assert_eq!((lines[0]["value"].as_f64(), lines[1]["value"].as_f64()), (Some(230.5), Some(1.25)));
    assert!(out.elapsed < Duration::from_secs(4));
    // No such device: 69.
    let spec = spec.replace(&pty.a.display().to_string(), "/dev/edgeguard-no-such-tty");
    write(dir.path(), "s.yaml", &spec);
    eg(["acquire", "s.yaml", "--once", "--no-store"]).dir(dir.path()).run().code(69);
}
