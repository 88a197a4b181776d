//! `serve` under systemd: the sd_notify protocol (`man 3 sd_notify`) for a
//! `Type=notify` unit with `WatchdogSec=` (`packaging/edgeguard.service`).
//!
//! systemd passes `$NOTIFY_SOCKET`, a Unix datagram socket (a path, or
//! `@name` in the abstract namespace), and with a watchdog `$WATCHDOG_USEC`
//! (and maybe `$WATCHDOG_PID`, the process meant to ping). A thread of its
//! own sends one datagram per message:
//!
//! - `READY=1` once the HTTP listener is bound and the engine has started
//!   its sources (the tap says `ready`);
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, but only while the engine
//!   loop's [`Heartbeat`](crate::engine::tap::Heartbeat) is younger than
//!   `WATCHDOG_USEC`. The loop passes at least once a second (a batch, or
//!   the wall-clock tick when nothing arrives), so an engine wedged for
//!   longer stops the pings and systemd restarts the service. An engine
//!   waiting for a full disk to take its commit is not wedged (the store
//!   writer retries; `/readyz` says so): the pings go on;
//! - `STOPPING=1` as soon as serve starts to stop (a signal; at the end of
//!   `--duration`), before the drain and the last commit — not for the run
//!   a reload replaces;
//! - `STATUS=…`, one line for `systemctl status`, every 10 s.
//!
//! Without `$NOTIFY_SOCKET` nothing runs. A variable that cannot be used
//! (a relative path, `vsock:`, a `WATCHDOG_USEC` that is not a number) is
//! logged as a warning and ignored, as is a failed send: serve never stops
//! for its supervisor's sake. The protocol is a few datagrams; std has
//! everything it needs, so no crate is used.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::tap::Tap;

/// How often the thread looks at the engine (readiness, heartbeat, stopping).
const POLL: Duration = Duration::from_millis(100);
/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The notifier thread; [`Notifier::finish`] sends `STOPPING=1` (unless
/// already sent) and joins it.
pub struct Notifier {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the environment asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Setup {
    pub socket: Target,
    /// Ping at half this, when the watchdog is on and meant for this process.
    pub watchdog: Option<Duration>,
}

/// Where the datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Path(std::path::PathBuf),
    /// Linux's abstract namespace (`@name`), without the `@`.
    Abstract(Vec<u8>),
}

impl Setup {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` for process `pid`.
    /// `Ok(None)` without `NOTIFY_SOCKET`; `Err` names what cannot be used.
    pub fn parse(
        socket: Option<&str>,
        usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Result<Option<Setup>, String> {
        let Some(socket) = socket.filter(|s| !s.is_empty()) else { return Ok(None) };
        let socket = if let Some(name) = socket.strip_prefix('@') {
            Target::Abstract(name.as_bytes().to_vec())
        } else if socket.starts_with('/') {
            Target::Path(socket.into())
        } else {
            return Err(format!(
                "NOTIFY_SOCKET={socket:?} is neither an absolute path nor @abstract; not telling systemd anything"
            ));
        };
        let watchdog = match usec.filter(|s| !s.is_empty()) {
            None => None,
            Some(u) => {
                let us: u64 = u.parse().map_err(|_| format!("WATCHDOG_USEC={u:?} is not a number of microseconds"))?;
                let for_us = match watchdog_pid.filter(|s| !s.is_empty()) {
                    None => true,
                    Some(p) => p.parse::<u32>().map_err(|_| format!("WATCHDOG_PID={p:?} is not a PID"))? == pid,
                };
                (us > 0 && for_us).then(|| Duration::from_micros(us))
            }
        };
        Ok(Some(Setup { socket, watchdog }))
    }

    fn address(&self) -> std::io::Result<SocketAddr> {
        match &self.socket {
            Target::Path(p) => SocketAddr::from_pathname(p),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Target::Abstract(name) => {
                #[cfg(target_os = "android")]
                use std::os::android::net::SocketAddrExt;
                #[cfg(target_os = "linux")]
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Target::Abstract(_) => {
                Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "abstract Unix sockets exist only on Linux"))
            }
        }
    }
}

impl Notifier {
    /// Starts the thread when the environment names a notify socket;
    /// `None` otherwise (or when it cannot be used: the reason is logged).
    /// `serving` completes the status line: `serving <serving>`.
    pub fn from_env(tap: Arc<Tap>, serving: String) -> Option<Notifier> {
        let var = |k: &str| std::env::var(k).ok();
        let setup = match Setup::parse(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        ) {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("systemd: {e}");
                return None;
            }
        };
        let socket = match setup.address().and_then(|a| UnixDatagram::unbound().map(|s| (s, a))) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("systemd: cannot use NOTIFY_SOCKET: {e}");
                return None;
            }
        };
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let watchdog = setup.watchdog;
        let thread = std::thread::Builder::new()
            .name("edgeguard-sd-notify".into())
            .spawn(move || Session::new(socket).run(&tap, watchdog, &serving, &d))
            .map_err(|e| tracing::warn!("systemd: cannot start the notifier thread: {e}"))
            .ok()?;
        Some(Notifier { done, thread: Some(thread) })
    }

    /// The run is over: `STOPPING=1` if the engine did not already say so.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The socket, and whether a failed send was already logged.
struct Session {
    socket: UnixDatagram,
    to: SocketAddr,
    warned: bool,
}

impl Session {
    fn new((socket, to): (UnixDatagram, SocketAddr)) -> Session {
        Session { socket, to, warned: false }
    }

    fn send(&mut self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.to) {
            if !self.warned {
                tracing::warn!("systemd: cannot write to NOTIFY_SOCKET: {e}");
                self.warned = true;
            }
        }
    }

    fn run(mut self, tap: &Tap, watchdog: Option<Duration>, serving: &str, done: &AtomicBool) {
        while !tap.ready.load(Ordering::Relaxed) {
            if done.load(Ordering::Relaxed) {
                // The run ended before it was ready (its error is reported by serve).
                self.send("STOPPING=1");
                return;
            }
            std::thread::sleep(POLL);
        }
        self.send(&format!("READY=1\nSTATUS=serving {serving}"));
        let ready_at = Instant::now();
        let mut last_ping: Option<Instant> = None;
        let mut last_status: Option<Instant> = Some(Instant::now());
        let mut stalled = false;
        while !done.load(Ordering::Relaxed) && !tap.heartbeat.stopping() {
            if let Some(limit) = watchdog {
                if last_ping.is_none_or(|t| t.elapsed() >= limit / 2) {
                    // Before the loop's first pass, count from READY.
                    let age = tap.heartbeat.age().min(ready_at.elapsed());
                    if age < limit || tap.commits.failing().is_some() {
                        self.send("WATCHDOG=1");
                        last_ping = Some(Instant::now());
                        if stalled {
                            stalled = false;
                            tracing::info!("systemd: the engine loop runs again; watchdog pings resume");
                            last_status = None;
                        }
                    } else if !stalled {
                        stalled = true;
                        let s = age.as_secs_f64();
                        tracing::error!(
                            "the engine loop has not run for {s:.1} s: no more watchdog pings, systemd will restart serve"
                        );
                        self.send(&format!("STATUS=engine loop stalled for {s:.0} s; watchdog pings stopped"));
                    }
                }
            }
            if !stalled && last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                let c = &tap.counters;
                self.send(&format!(
                    "STATUS=serving {serving}: {} readings, {} anomalies, {} alerts",
                    c.readings.load(Ordering::Relaxed),
                    c.anomalies.load(Ordering::Relaxed),
                    c.alerts.load(Ordering::Relaxed)
                ));
                last_status = Some(Instant::now());
            }
            std::thread::sleep(POLL);
        }
        self.send("STOPPING=1\nSTATUS=stopping: committing what was read");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_read_as_sd_notify_documents_it() {
        assert_eq!(Setup::parse(None, Some("1000000"), None, 7), Ok(None));
        assert_eq!(Setup::parse(Some(""), None, None, 7), Ok(None));
        let s = Setup::parse(Some("/run/systemd/notify"), None, None, 7).unwrap().unwrap();
        assert_eq!(s, Setup { socket: Target::Path("/run/systemd/notify".into()), watchdog: None });
        let s = Setup::parse(Some("@sd-123"), Some("30000000"), Some("7"), 7).unwrap().unwrap();
        assert_eq!(s, Setup { socket: Target::Abstract(b"sd-123".to_vec()), watchdog: Some(Duration::from_secs(30)) });
        // Meant for another process, or switched off: no pings.
        assert_eq!(Setup::parse(Some("/n"), Some("30000000"), Some("8"), 7).unwrap().unwrap().watchdog, None);
        assert_eq!(Setup::parse(Some("/n"), Some("0"), None, 7).unwrap().unwrap().watchdog, None);
        for (sock, usec, pid, err) in [
            ("notify", None, None, "neither an absolute path"),
            ("vsock:2:1234", None, None, "neither an absolute path"),
            ("/n", Some("30s"), None, "WATCHDOG_USEC=\"30s\""),
            ("/n", Some("1"), Some("me"), "WATCHDOG_PID=\"me\""),
        ] {
            let e = Setup::parse(Some(sock), usec, pid, 7).unwrap_err();
            assert!(e.contains(err), "{e}");
        }
    }
}
