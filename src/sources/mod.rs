//! Where records come from.
//!
//! * Live sources — [`modbus`], [`mqtt`], [`nats`], [`serial`] — talk to
//!   devices, brokers and a fleet's hub. Each implements [`Source`]: one run signature over one
//!   [`SourceContext`], one [`StatsHandle`] for the summary line and
//!   `/metrics`. [`build`] is the one place that makes a live source from
//!   its plan; the engine and `serve` know no source by name.
//! * [`simulate`] is driven by the engine's clock (virtual or wall), not
//!   run as a task of its own; [`input`] (NDJSON/CSV files and stdin) and
//!   [`replay`] (stored readings for a backtest) are read on a thread.
//!
//! Every producer hands the engine [`Batch`]es of
//! [`Record`](crate::model::record::Record)s.
//!
//! To add a live source: its `*Spec` in `spec/sources.rs`, its plan and
//! compile function in `compile/`, its folder here with a type that
//! implements [`Source`] and a stats type that implements [`Stats`], and one
//! arm in [`build`].

pub mod backoff;
pub mod input;
pub mod modbus;
pub mod mqtt;
pub mod nats;
pub mod payload;
pub mod replay;
pub mod serial;
pub mod simulate;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::compile::{SourceKind, SourcePlan};
use crate::model::batch::Batch;

/// What the engine gives every live source.
pub struct SourceContext {
    /// Where the source's batches go (bounded: a slow store slows the source).
    pub tx: mpsc::Sender<Batch>,
    /// Turns true when the run stops; the source hands over what it has and returns.
    pub stop: watch::Receiver<bool>,
    /// `--once`: read every point once and return; sources that wait for
    /// messages (MQTT, serial) wait at most this long.
    pub once: Option<Duration>,
    /// Turns true once the engine's last commit is done: a source that
    /// acknowledges after commit (MQTT) keeps its connection until then.
    pub finished: watch::Receiver<bool>,
}

/// A source that talks to a device or broker.
pub trait Source: Send {
    /// Its counters, readable while it runs.
    fn stats(&self) -> StatsHandle;
    /// Reads until `cx.stop` (or once, with `cx.once`).
    fn run(self: Box<Self>, cx: SourceContext) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// What every live source reports, whatever its kind.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    /// The source's line in the run summary.
    pub summary: String,
    /// What had to answer, and whether it did: Modbus units; the broker and
    /// each topic filter; the serial device and each channel. `--once`
    /// exits 69 when nothing answered and 1 when something did not.
    pub devices: Vec<(String, bool)>,
    /// The peer refused our credentials (exit 77).
    pub refused: Option<String>,
    /// Requests, messages or lines (`edgeguard_source_polls_total`).
    pub polls: u64,
    /// Failed polls and rejected input (`edgeguard_source_errors_total`).
    pub errors: u64,
    /// Reconnections (`edgeguard_source_reconnects_total`).
    pub reconnects: u64,
    /// Answers that did not belong to their request: another device's unit
    /// id, a wrong transaction id, function or length
    /// (`edgeguard_source_mismatches_total`; Modbus only, also in `errors`).
    pub mismatches: u64,
    /// Response times of the requests the device answered (sources that
    /// ask: Modbus); `None` for sources that listen.
    pub latency: Option<LatencySummary>,
}

/// Response times of answered requests, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: u64,
    /// The upper bound of the power-of-two bucket holding the 99th percentile.
    pub p99_us: u64,
    pub max_us: u64,
}

impl std::fmt::Display for SourceStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

/// A source's own counters, seen the same way as every other's.
pub trait Stats: Send + 'static {
    fn snapshot(&self) -> SourceStats;
}

/// The live counters of a running source.
#[derive(Clone)]
pub struct StatsHandle(Arc<dyn Fn() -> SourceStats + Send + Sync>);

impl StatsHandle {
    /// A handle on counters the source updates under a mutex.
    pub fn of<T: Stats>(counters: Arc<Mutex<T>>) -> StatsHandle {
        StatsHandle(Arc::new(move || counters.lock().unwrap_or_else(|e| e.into_inner()).snapshot()))
    }
    pub fn snapshot(&self) -> SourceStats {
        (self.0)()
    }
}

/// The live source of a plan entry; `None` for a simulator (the engine
/// drives those). Fails when a secret or TLS file the source needs is missing.
pub fn build(plan: &SourcePlan, pipeline: &str) -> Result<Option<Box<dyn Source>>, String> {
    let id = plan.id.as_str();
    Ok(Some(match &plan.kind {
        SourceKind::Modbus(m) => Box::new(modbus::Poller::new(id, m)),
        SourceKind::Mqtt(m) => Box::new(mqtt::Subscriber::new(id, m)?),
        SourceKind::Nats(n) => Box::new(nats::NatsSource::new(id, pipeline, n)?),
        SourceKind::Serial(s) => Box::new(serial::LineSource::new(id, s)?),
        SourceKind::Simulate(_) => return Ok(None),
    }))
}

/// Sleeps until `t`, or forever without one (a disabled `select!` branch).
pub(crate) async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
