//! Test peers: processes the tests start (a pymodbus server, proxies, socat)
//! and always stop, even when a test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::repo;

pub fn python() -> String {
    std::env::var("EDGEGUARD_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = repo().join(".venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    })
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process that is killed when dropped.
pub struct Peer {
    child: Child,
    what: String,
}

impl Peer {
    /// Starts `argv` and waits until it prints `ready`.
    pub fn start(argv: &[&str]) -> Peer {
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {argv:?}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.trim() == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        let peer = Peer { child, what: format!("{argv:?}") };
        rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("{} did not get ready", peer.what));
        peer
    }

    /// The pymodbus server of `tests/peers/modbus_peer.py` on a TCP port.
    pub fn modbus_tcp(port: u16, units: &str) -> Peer {
        let port = port.to_string();
        Peer::start(&[&python(), "tests/peers/modbus_peer.py", "server", "--tcp", &port, "--units", units])
    }

    pub fn modbus_proxy(port: u16, upstream: u16, extra: &[&str]) -> Peer {
        let (p, u) = (port.to_string(), upstream.to_string());
        let mut argv = vec![python(), "tests/peers/modbus_peer.py".into(), "proxy".into(), p, u];
        argv.extend(extra.iter().map(|s| s.to_string()));
        Peer::start(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A socat pair of pseudo-terminals, linked at `dir/a` and `dir/b`.
pub struct PtyPair {
    child: Child,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl PtyPair {
    pub fn new(dir: &Path) -> PtyPair {
        let (a, b) = (dir.join("a"), dir.join("b"));
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (scripts/test installs it)");
        let started = Instant::now();
        while !(a.exists() && b.exists()) {
            assert!(started.elapsed() < Duration::from_secs(10), "socat made no ptys");
            std::thread::sleep(Duration::from_millis(20));
        }
        PtyPair { child, a, b }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
