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

/// A mosquitto broker on a free port with persistence in `dir`: no limit on
/// queued or in-flight messages (measured with mosquitto 2.0.11: the defaults drop messages
/// for an offline persistent client, and acks after commit need a window).
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        Broker::start_with(dir, "allow_anonymous true\n")
    }

    /// A broker whose listener has `settings` (TLS files, a password file…).
    pub fn start_with(dir: &Path, settings: &str) -> Broker {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{settings}persistence true\npersistence_location {}/\n\
                 user root\n\
                 max_queued_messages 0\nmax_inflight_messages 0\nautosave_interval 1\nlog_dest none\n",
                // `user root`: run as root, mosquitto would switch to user
                // mosquitto, who cannot write the test's folder (ignored otherwise).
                dir.display()
            ),
        )
        .unwrap();
        let mut b = Broker { child: None, port, conf };
        b.restart();
        b
    }

    pub fn restart(&mut self) {
        self.stop();
        let exe = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let child = Command::new(exe)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Only "should not be run as root" goes there (log_dest none).
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (scripts/test installs it)");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, so the broker saves its persistence file.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Publishes `payloads` to the broker with rumqttc and returns once the
/// broker acknowledged every one (QoS ≥ 1) or all were sent (QoS 0).
pub fn publish(port: u16, qos: u8, retain: bool, messages: Vec<(String, Vec<u8>)>) {
    publish_as(port, None, qos, retain, messages)
}

/// [`publish`] with a user name and password.
pub fn publish_as(port: u16, login: Option<(&str, &str)>, qos: u8, retain: bool, messages: Vec<(String, Vec<u8>)>) {
    let login = login.map(|(u, p)| (u.to_string(), p.to_string()));
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut o = MqttOptions::new(format!("pub-{}", free_port()), "127.0.0.1", port);
        o.set_max_packet_size(4 << 20, 4 << 20);
        o.set_inflight(1000);
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        let (client, mut ev) = AsyncClient::new(o, 1000);
        let q = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let n = messages.len();
        let sender = tokio::spawn(async move {
            for (topic, payload) in messages {
                client.publish(topic, q, retain, payload).await.unwrap();
            }
            client
        });
        let mut acked = 0;
        let mut sent = 0;
        while (qos > 0 && acked < n) || (qos == 0 && sent < n) {
            match ev.poll().await.expect("publisher connection") {
                Event::Incoming(Packet::PubAck(_)) | Event::Incoming(Packet::PubComp(_)) => acked += 1,
                Event::Outgoing(rumqttc::Outgoing::Publish(_)) => sent += 1,
                _ => {}
            }
        }
        let client = sender.await.unwrap();
        client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(2), async { while ev.poll().await.is_ok() {} }).await;
    });
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (scripts/test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
pub fn certificates(dir: &Path) {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=edgeguard test CA",
            days[0],
            days[1],
        ],
    );
    for (name, cn, ext) in
        [("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1"), ("client", "edgeguard", "extendedKeyUsage=clientAuth")]
    {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
                days[0],
                days[1],
            ],
        );
    }
}

/// A child process killed (and reaped) when dropped, so that a failing test
/// leaves nothing running.
pub struct Reaped(pub Option<Child>);

impl Reaped {
    pub fn pid(&self) -> i32 {
        self.0.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGTERM, then the exit code and whatever the child wrote to piped stderr.
    pub fn terminate(&mut self) -> (Option<i32>, String) {
        let Some(child) = self.0.take() else { return (None, String::new()) };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().expect("wait");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// HTTP for the serve tests: one blocking call at a time on a fresh runtime
// (a client is not reused across runtimes).

/// An HTTP client that speaks rustls, with a 20 s timeout.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// A runtime for one blocking call.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Sends `req` (with the bearer token); status and body, or 0 when the
/// connection failed.
pub fn send(req: reqwest::RequestBuilder, token: Option<&str>) -> (u16, String) {
    let req = match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    rt().block_on(async {
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    })
}

/// `GET url`, as [`send`].
pub fn get(url: &str, token: Option<&str>) -> (u16, String) {
    send(client().get(url), token)
}
