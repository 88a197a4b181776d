//! What a running engine shares with `serve`'s HTTP side: the latest reading
//! of every channel, a broadcast of every record for the live stream, a way
//! in for readings posted to the API, a connection to the store for
//! queries, and counters for `/metrics`.

use crate::forward::ForwardStats;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};

use super::SourceReport;
use crate::model::batch::Batch;
use crate::model::intern::FxHashMap;
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::sinks::store::CommitCounters;
use crate::sources::StatsHandle;

/// Records buffered per stream subscriber before it counts as lagging.
pub const STREAM_BUFFER: usize = 16_384;

/// The latest reading of a channel.
#[derive(Debug, Clone)]
pub struct Latest {
    pub reading: Reading,
    /// Readings of the channel since the start.
    pub count: u64,
}

/// One record on the live stream.
#[derive(Debug)]
pub struct StreamItem {
    pub kind: Box<str>,
    pub channel: Option<Arc<str>>,
    /// The record's NDJSON line, without the newline.
    pub line: Box<str>,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub readings: AtomicU64,
    pub good: AtomicU64,
    pub suspect: AtomicU64,
    pub bad: AtomicU64,
    pub anomalies: AtomicU64,
    pub alerts: AtomicU64,
    pub posted: AtomicU64,
    pub posted_rejected: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub notifications_failed: AtomicU64,
    pub batches_waiting: AtomicU64,
    pub stream_lagged: AtomicU64,
    /// Reloads of the spec that took, and that did not compile.
    pub reloads: AtomicU64,
    pub reloads_failed: AtomicU64,
}

/// Compiles the spec again and switches to it (`serve`'s reload).
pub type Reload = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The engine loop's pulse, for serve's systemd watchdog (`serve::systemd`):
/// stamped on every pass through the loop (a batch, or the wall-clock tick
/// once a second when nothing arrives), and marked once serve stops (not
/// when a run ends for a reload: the next one follows at once).
#[derive(Debug)]
pub struct Heartbeat {
    base: Instant,
    /// Milliseconds from `base` to the last pass.
    last: AtomicU64,
    stopping: AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat { base: Instant::now(), last: AtomicU64::new(0), stopping: AtomicBool::new(false) }
    }
}

impl Heartbeat {
    /// One pass of the engine loop.
    pub(super) fn beat(&self) {
        self.last.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// serve stops (a signal): it drains now.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// How long ago the loop last passed (since the tap was made, before the first pass).
    pub fn age(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }

    /// serve was told to stop: it drains now.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// What the readings of one source said about it: failed polls are bad
/// readings flagged `timeout`, `disconnected`, `crc`, `mismatch` or
/// `exception_N` ([`Flags::failed_poll`]);
/// every other reading of the source is a success (stale gaps, made by
/// validation, count as neither). Times are wall-clock µs
/// of when the tap saw them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceSeen {
    pub ok: u64,
    pub failed: u64,
    pub last_ok: Option<i64>,
    pub last_failed: Option<i64>,
    /// The flags of the last failed reading (why it failed).
    pub last_flags: Flags,
}

pub struct Tap {
    latest: RwLock<FxHashMap<Arc<str>, Latest>>,
    /// Bumped on every batch: lets readers cache what they built from `latest`.
    pub version: AtomicU64,
    pub stream: broadcast::Sender<Arc<StreamItem>>,
    ingest: Mutex<Option<mpsc::Sender<Batch>>>,
    reader: Mutex<Option<duckdb::Connection>>,
    sources: Mutex<Vec<(String, StatsHandle)>>,
    /// Per source id: what its readings said (failed polls, successes).
    seen: Mutex<FxHashMap<Arc<str>, SourceSeen>>,
    forward: Mutex<Vec<(String, Arc<ForwardStats>)>>,
    pub counters: Counters,
    /// The store writer's commit counters (shared with it).
    pub commits: Arc<CommitCounters>,
    pub ready: AtomicBool,
    pub heartbeat: Heartbeat,
    pub store_path: Mutex<Option<std::path::PathBuf>>,
    /// What the store keeps at which resolution (raw readings, rollups).
    pub tiers: Mutex<crate::sinks::store::Tiers>,
    confine: Mutex<Option<Vec<std::path::PathBuf>>>,
    reload: Mutex<Option<Reload>>,
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            latest: RwLock::default(),
            version: AtomicU64::new(0),
            stream: broadcast::channel(STREAM_BUFFER).0,
            ingest: Mutex::new(None),
            reader: Mutex::new(None),
            confine: Mutex::new(None),
            sources: Mutex::new(Vec::new()),
            seen: Mutex::new(FxHashMap::default()),
            forward: Mutex::new(Vec::new()),
            counters: Counters::default(),
            commits: Arc::default(),
            ready: AtomicBool::new(false),
            heartbeat: Heartbeat::default(),
            store_path: Mutex::new(None),
            tiers: Mutex::default(),
            reload: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tap {
    /// The queue posted readings go into (the engine's; serve's tests give
    /// their own to see a full one).
    pub(crate) fn open_ingest(&self, tx: mpsc::Sender<Batch>) {
        *lock(&self.ingest) = Some(tx);
    }

    /// No more posted readings: the engine is draining.
    pub(super) fn close_ingest(&self) {
        lock(&self.ingest).take();
    }

    /// Where posted readings go; `None` once the engine drains.
    pub fn ingest(&self) -> Option<mpsc::Sender<Batch>> {
        lock(&self.ingest).clone()
    }

    pub(super) fn set_reader(
        &self,
        conn: duckdb::Connection,
        path: std::path::PathBuf,
        tiers: crate::sinks::store::Tiers,
    ) {
        *lock(&self.reader) = Some(conn);
        *lock(&self.store_path) = Some(path);
        *lock(&self.tiers) = tiers;
    }

    /// From now on, each run confines the store's database to its own files
    /// and `allowed` folders ([`crate::sinks::store::Store::confine`])
    /// before the store is readable through the tap: `serve` runs SQL from
    /// its API on it.
    pub fn confine_store(&self, allowed: Vec<std::path::PathBuf>) {
        *lock(&self.confine) = Some(allowed);
    }

    pub(super) fn store_confinement(&self) -> Option<Vec<std::path::PathBuf>> {
        lock(&self.confine).clone()
    }

    /// A new connection to the store (DuckDB connections are cheap clones
    /// of one database), or `None` without a store.
    pub fn connection(&self) -> Option<duckdb::Connection> {
        lock(&self.reader).as_ref().and_then(|c| c.try_clone().ok())
    }

    /// Closes the store connection at the end of a run: the next run of a
    /// reloaded spec opens the file afresh, and no connection of the old
    /// database may outlive it.
    pub(super) fn clear_reader(&self) {
        lock(&self.reader).take();
    }

    pub fn set_reload(&self, reload: Reload) {
        *lock(&self.reload) = Some(reload);
    }

    /// How to reload the spec, when the process can.
    pub fn reload(&self) -> Option<Reload> {
        lock(&self.reload).clone()
    }

    pub(super) fn set_sources(&self, sources: Vec<(String, StatsHandle)>) {
        *lock(&self.sources) = sources;
    }

    pub(super) fn set_forward(&self, targets: Vec<(String, Arc<ForwardStats>)>) {
        *lock(&self.forward) = targets;
    }

    /// Counters of every forward target, by target id.
    pub fn forward(&self) -> Vec<(String, Arc<ForwardStats>)> {
        lock(&self.forward).clone()
    }

    /// Counters of every device source.
    pub fn sources(&self) -> Vec<SourceReport> {
        lock(&self.sources).iter().map(|(id, h)| SourceReport { id: id.clone(), stats: h.snapshot() }).collect()
    }

    /// Counts what the readings of these sources say about them (the spec's
    /// sources; `serve` refuses a posted reading under one of their names).
    pub fn track_sources<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut seen = lock(&self.seen);
        for id in ids {
            seen.entry(Arc::from(id)).or_default();
        }
    }

    /// `id` is one of the spec's sources (tracked since the run started).
    pub fn is_spec_source(&self, id: &str) -> bool {
        lock(&self.seen).contains_key(id)
    }

    /// What the readings of each tracked source said about it, by source id.
    pub fn seen(&self) -> FxHashMap<Arc<str>, SourceSeen> {
        lock(&self.seen).clone()
    }

    /// The latest reading of every channel, sorted by channel.
    pub fn latest(&self) -> Vec<Latest> {
        let map = self.latest.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Latest> = map.values().cloned().collect();
        v.sort_by(|a, b| a.reading.channel.cmp(&b.reading.channel));
        v
    }

    /// Takes in one batch of what the stages made.
    pub(super) fn observe(&self, batch: &[Record]) {
        let c = &self.counters;
        let now = crate::model::time::now_micros();
        let horizon = now + crate::stages::validate::MAX_CLOCK_SKEW_US;
        {
            let mut map = self.latest.write().unwrap_or_else(|e| e.into_inner());
            let mut seen = lock(&self.seen);
            for rec in batch {
                match rec {
                    Record::Reading(r) => {
                        // Stale gaps are made by validation, not read from the source.
                        let not_read_by_a_source = r.from_input || r.fusion.is_some() || r.flags.contains(Flags::STALE);
                        let tracked = if not_read_by_a_source { None } else { seen.get_mut(&r.source) };
                        if let Some(s) = tracked {
                            if r.flags.failed_poll() {
                                s.failed += 1;
                                s.last_failed = Some(now);
                                s.last_flags = r.flags;
                            } else {
                                s.ok += 1;
                                s.last_ok = Some(now);
                            }
                        }
                        c.readings.fetch_add(1, Ordering::Relaxed);
                        match r.quality {
                            Quality::Good => &c.good,
                            Quality::Suspect => &c.suspect,
                            Quality::Bad => &c.bad,
                        }
                        .fetch_add(1, Ordering::Relaxed);
                        match map.get_mut(&r.channel) {
                            // Newest wins, but not one stamped beyond the horizon.
                            Some(l) if (l.reading.ts <= r.ts && r.ts <= horizon) || l.reading.ts > horizon => {
                                l.reading = r.clone();
                                l.count += 1;
                            }
                            Some(l) => l.count += 1,
                            None => {
                                map.insert(r.channel.clone(), Latest { reading: r.clone(), count: 1 });
                            }
                        }
                    }
                    Record::Anomaly(_) => {
                        c.anomalies.fetch_add(1, Ordering::Relaxed);
                    }
                    Record::Alert(_) => {
                        c.alerts.fetch_add(1, Ordering::Relaxed);
                    }
                    Record::Other { kind, .. } if &**kind == "anomaly" => {
                        c.anomalies.fetch_add(1, Ordering::Relaxed);
                    }
                    Record::Other { kind, .. } if &**kind == "alert" => {
                        c.alerts.fetch_add(1, Ordering::Relaxed);
                    }
                    Record::Delivery(_) | Record::Other { .. } => {}
                }
            }
        }
        self.version.fetch_add(1, Ordering::Relaxed);
        if self.stream.receiver_count() == 0 {
            return;
        }
        let mut buf = Vec::with_capacity(256);
        for rec in batch {
            buf.clear();
            rec.write_ndjson(&mut buf);
            while buf.last() == Some(&b'\n') {
                buf.pop();
            }
            let channel = match rec {
                Record::Reading(r) => Some(r.channel.clone()),
                Record::Other { line, .. } => serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["channel"].as_str().map(Arc::from)),
                typed @ (Record::Anomaly(_) | Record::Alert(_) | Record::Delivery(_)) => typed.channel().map(Arc::from),
            };
            let item = StreamItem { kind: rec.kind().into(), channel, line: String::from_utf8_lossy(&buf).into() };
            let _ = self.stream.send(Arc::new(item));
        }
    }
}
