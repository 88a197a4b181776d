//! What `serve` knows of the run's health, for `/readyz`,
//! `/api/v1/sources` and `/metrics`: the state of each source (up,
//! degraded, down), whether the store still commits, whether the ingest
//! queue is saturated.
//!
//! A sampler ([`run_sampler`]) looks at the tap every [`SAMPLE`] and
//! remembers when each count last moved: a source's successes and failures
//! (its readings: a failed poll is a reading flagged `timeout`,
//! `disconnected`, `crc`, `mismatch` or `exception_N`; and its own counters: polls,
//! errors such as a broker connection that fails), the store's commits
//! against the records waiting for one, the queue's free slots. The checks
//! compare those times with now, so they cost nothing per reading.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::engine::tap::Tap;
use crate::model::intern::FxHashMap;
use crate::model::time::{format_rfc3339, now_micros, Micros};

/// How often the sampler looks.
pub const SAMPLE: Duration = Duration::from_secs(1);
/// Records waiting longer than `store.flush` plus this for a commit: the
/// store cannot commit.
pub const STORE_GRACE: Duration = Duration::from_secs(30);
/// The ingest queue full at every sample for this long: saturated.
pub const QUEUE_SATURATED: Duration = Duration::from_secs(10);

/// What the checks need to know of the run, from its plan.
#[derive(Debug, Clone)]
pub struct Watch {
    /// Every source of the spec: id, `type`, and whether it listens (MQTT,
    /// NATS, serial: a (re)connection made counts as a success).
    pub sources: Vec<(String, &'static str, bool)>,
    /// `serve.down_after`.
    pub down_after: Duration,
    /// The store, when the run has one.
    pub store: Option<StoreWatch>,
    /// Channel ranges and fusion inputs, for `/api/v1/channels`.
    pub layout: Arc<super::layout::Layout>,
}

#[derive(Debug, Clone, Copy)]
pub struct StoreWatch {
    /// `store.flush`.
    pub flush: Duration,
    /// `store.records` keeps readings (else only anomalies and alerts are
    /// waited for).
    pub readings: bool,
}

/// The state of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// No failure within `serve.down_after`.
    Up,
    /// A failure within `serve.down_after`, but not failing that long.
    Degraded,
    /// Failing for `serve.down_after` or longer without one success.
    Down,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Up => "up",
            SourceState::Degraded => "degraded",
            SourceState::Down => "down",
        }
    }
    /// The value of `edgeguard_source_state`.
    pub fn code(self) -> u8 {
        match self {
            SourceState::Up => 0,
            SourceState::Degraded => 1,
            SourceState::Down => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct SourceSample {
    polls: u64,
    errors: u64,
    reconnects: u64,
    last_ok: Option<Micros>,
    last_error: Option<Micros>,
    /// The first failure since the last success.
    failing_since: Option<Micros>,
}

#[derive(Debug, Default)]
struct Samples {
    at: Micros,
    sources: FxHashMap<String, SourceSample>,
    commits: u64,
    waiting_rows: u64,
    uncommitted_since: Option<Micros>,
    queue_full_since: Option<Micros>,
}

pub struct Health {
    /// Replaced when serve reloads its spec.
    watch: std::sync::RwLock<Watch>,
    tap: Arc<Tap>,
    samples: Mutex<Samples>,
}

/// One source as `/api/v1/sources` shows it.
#[derive(Debug, Clone)]
pub struct SourceHealth {
    pub id: String,
    pub state: SourceState,
    json: Value,
}

impl Health {
    pub fn new(watch: Watch, tap: Arc<Tap>) -> Health {
        tap.track_sources(watch.sources.iter().map(|(id, _, _)| id.as_str()));
        Health { watch: std::sync::RwLock::new(watch), tap, samples: Mutex::new(Samples::default()) }
    }

    /// What is watched now.
    pub fn watch(&self) -> Watch {
        self.watch.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A reloaded spec's sources and store.
    pub fn set_watch(&self, watch: Watch) {
        self.tap.track_sources(watch.sources.iter().map(|(id, _, _)| id.as_str()));
        *self.watch.write().unwrap_or_else(|e| e.into_inner()) = watch;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks at the tap once (the sampler calls it every [`SAMPLE`]).
    pub fn sample(&self) {
        self.sample_at(now_micros());
    }

    fn sample_at(&self, now: Micros) {
        let stats: FxHashMap<String, crate::sources::SourceStats> =
            self.tap.sources().into_iter().map(|s| (s.id, s.stats)).collect();
        let seen = self.tap.seen();
        let mut s = self.lock();
        let before = s.at;
        let watch = self.watch();
        for (id, _, listens) in &watch.sources {
            let prev = s.sources.get(id).copied().unwrap_or_default();
            let (polls, errors, reconnects) =
                stats.get(id).map_or((0, 0, 0), |st| (st.polls, st.errors, st.reconnects));
            let (dp, de) = (polls.saturating_sub(prev.polls), errors.saturating_sub(prev.errors));
            let reconnected = *listens && reconnects > prev.reconnects;
            let read = seen.get(id.as_str()).copied().unwrap_or_default();
            // A success: a reading that is not a failed poll, requests and
            // messages that outnumber the errors counted with them, or a
            // listening source's connection made again.
            let ok_now = read.last_ok.is_some_and(|t| t > before) || dp > de || reconnected;
            let failed_now = read.last_failed.is_some_and(|t| t > before) || de > 0;
            let mut next = SourceSample {
                polls,
                errors,
                reconnects,
                last_ok: max(prev.last_ok, max(read.last_ok, (dp > de || reconnected).then_some(now))),
                last_error: max(prev.last_error, max(read.last_failed, (de > 0).then_some(now))),
                failing_since: prev.failing_since,
            };
            if ok_now {
                next.failing_since = None;
            } else if failed_now && next.failing_since.is_none() {
                next.failing_since = Some(read.last_failed.filter(|t| *t > before).unwrap_or(now));
            }
            s.sources.insert(id.clone(), next);
        }
        if let Some(store) = watch.store {
            let c = &self.tap.counters;
            let l = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            let commits = l(&self.tap.commits.commits);
            let rows = if store.readings { l(&c.readings) } else { l(&c.anomalies) + l(&c.alerts) };
            if commits > s.commits {
                s.uncommitted_since = None;
            } else if rows > s.waiting_rows && s.uncommitted_since.is_none() {
                s.uncommitted_since = Some(now);
            }
            (s.commits, s.waiting_rows) = (commits, rows);
        }
        let full = self.tap.ingest().is_some_and(|tx| tx.capacity() == 0);
        s.queue_full_since = if full { s.queue_full_since.or(Some(now)) } else { None };
        s.at = now;
    }

    /// Every source of the spec, in spec order.
    pub fn sources(&self) -> Vec<SourceHealth> {
        let now = now_micros();
        let stats: FxHashMap<String, crate::sources::SourceStats> =
            self.tap.sources().into_iter().map(|s| (s.id, s.stats)).collect();
        let seen = self.tap.seen();
        let s = self.lock();
        let watch = self.watch();
        let down_after = watch.down_after.as_micros() as i64;
        let time = |t: Option<Micros>| t.map(format_rfc3339);
        watch
            .sources
            .iter()
            .map(|(id, kind, _)| {
                let smp = s.sources.get(id).copied().unwrap_or_default();
                let read = seen.get(id.as_str()).copied().unwrap_or_default();
                // The readings seen since the last sample count too.
                let (last_ok, last_error) = (max(smp.last_ok, read.last_ok), max(smp.last_error, read.last_failed));
                let state = match smp.failing_since {
                    Some(t) if now - t >= down_after => SourceState::Down,
                    Some(_) => SourceState::Degraded,
                    None if last_error.is_some_and(|t| now - t < down_after) => SourceState::Degraded,
                    None => SourceState::Up,
                };
                let st = stats.get(id);
                let latency = st.and_then(|st| st.latency).map(|l| {
                    json!({"requests": l.count, "mean_ms": l.mean_us as f64 / 1e3,
                           "p99_ms": l.p99_us as f64 / 1e3, "max_ms": l.max_us as f64 / 1e3})
                });
                let reason = (read.failed > 0).then(|| read.last_flags.names().collect::<Vec<_>>().join(","));
                let json = json!({
                    "id": id,
                    "type": kind,
                    "state": state.as_str(),
                    "failing_since": time(smp.failing_since),
                    "last_success": time(last_ok),
                    "last_error": time(last_error),
                    "last_failed_poll": reason,
                    "polls": st.map(|s| s.polls),
                    "errors": st.map(|s| s.errors),
                    "reconnects": st.map(|s| s.reconnects),
                    "readings": {"ok": read.ok, "failed": read.failed},
                    "latency": latency,
                });
                SourceHealth { id: id.clone(), state, json }
            })
            .collect()
    }

    /// `/readyz`: whether serve is ready, and the body that says why not.
    pub fn readiness(&self) -> (bool, Value) {
        let now = now_micros();
        let mut problems = Vec::new();
        let ingest = self.tap.ingest();
        let pipeline = match (self.tap.ready.load(std::sync::atomic::Ordering::Relaxed), &ingest) {
            (false, _) => "starting",
            (true, None) => "stopping",
            (true, Some(_)) => "running",
        };
        if pipeline != "running" {
            problems.push(format!("pipeline: {pipeline}"));
        }
        let sources = self.sources();
        let count = |st: SourceState| sources.iter().filter(|s| s.state == st).count();
        for s in sources.iter().filter(|s| s.state == SourceState::Down) {
            let since = s.json["failing_since"].as_str().unwrap_or("?");
            let why =
                s.json["last_failed_poll"].as_str().map(|r| format!(" (last failed poll: {r})")).unwrap_or_default();
            problems.push(format!("source {}: down, failing since {since} without a success{why}", s.id));
        }
        let smp = self.lock();
        let failing = self.tap.commits.failing();
        let store = match self.watch().store {
            None => "none",
            // A full disk: the writer holds its records and retries.
            Some(_) if failing.is_some() => {
                problems.push(format!("store: cannot commit, retrying: {}", failing.unwrap_or_default()));
                "failing"
            }
            Some(st) => match smp.uncommitted_since {
                Some(t) if now - t >= (st.flush + STORE_GRACE).as_micros() as i64 => {
                    problems.push(format!(
                        "store: records have waited {} s for a commit (store.flush is {} ms)",
                        (now - t) / 1_000_000,
                        st.flush.as_millis()
                    ));
                    "stalled"
                }
                _ => "ok",
            },
        };
        let (batches, capacity) =
            ingest.as_ref().map_or((0, 0), |tx| (tx.max_capacity() - tx.capacity(), tx.max_capacity()));
        let saturated = smp.queue_full_since.is_some_and(|t| now - t >= QUEUE_SATURATED.as_micros() as i64);
        if saturated {
            problems.push(format!(
                "queue: the ingest queue has been full ({capacity} batches) for {} s: the stages or the store cannot keep up",
                (now - smp.queue_full_since.unwrap_or(now)) / 1_000_000
            ));
        }
        let ready = problems.is_empty();
        let body = json!({
            "status": if ready { "ready" } else { "not ready" },
            "problems": problems,
            "checks": {
                "pipeline": pipeline,
                "sources": {"up": count(SourceState::Up), "degraded": count(SourceState::Degraded), "down": count(SourceState::Down)},
                "store": store,
                "queue": {"batches": batches, "capacity": capacity, "saturated": saturated},
            },
        });
        (ready, body)
    }
}

impl SourceHealth {
    pub fn json(&self) -> &Value {
        &self.json
    }
}

fn max(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    a.max(b)
}

/// Samples every [`SAMPLE`] until `stop`.
pub async fn run_sampler(health: Arc<Health>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(SAMPLE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => health.sample(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn records_that_wait_past_flush_and_the_grace_make_the_store_stalled_until_a_commit() {
        let tap = Arc::new(Tap::default());
        let watch = Watch {
            sources: Vec::new(),
            down_after: Duration::from_secs(60),
            store: Some(StoreWatch { flush: Duration::from_secs(1), readings: true }),
            layout: Arc::default(),
        };
        let h = Health::new(watch, tap.clone());
        let store = |h: &Health| h.readiness().1["checks"]["store"].clone();
        let now = now_micros();
        h.sample_at(now - 40_000_000);
        tap.counters.readings.fetch_add(10, Relaxed);
        h.sample_at(now - 39_000_000);
        let (ready, body) = h.readiness();
        assert!(!ready);
        assert_eq!(body["checks"]["store"], "stalled", "{body}");
        let problems = body["problems"].to_string();
        assert!(problems.contains("store: records have waited 39 s for a commit (store.flush is 1000 ms)"), "{body}");
        // Records that have waited less than flush + 30 s are not a problem.
        let h2 = Health::new(h.watch(), tap.clone());
        h2.sample_at(now - 10_000_000);
        tap.counters.readings.fetch_add(10, Relaxed);
        h2.sample_at(now - 9_000_000);
        assert_eq!(store(&h2), "ok");
        // A commit: the store commits again.
        tap.commits.commits.fetch_add(1, Relaxed);
        h.sample_at(now);
        assert_eq!(store(&h), "ok");
        // Only records the store keeps count: with readings not kept, readings may pile up.
        let watch = Watch { store: Some(StoreWatch { flush: Duration::from_secs(1), readings: false }), ..h.watch() };
        let h3 = Health::new(watch, tap.clone());
        h3.sample_at(now - 40_000_000);
        tap.counters.readings.fetch_add(10, Relaxed);
        h3.sample_at(now - 39_000_000);
        assert_eq!(store(&h3), "ok");
    }

    #[test]
    fn a_queue_full_at_every_look_for_ten_seconds_is_saturated() {
        let tap = Arc::new(Tap::default());
        tap.ready.store(true, Relaxed);
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        tx.try_send(crate::model::batch::Batch::default()).unwrap();
        tx.try_send(crate::model::batch::Batch::default()).unwrap();
        tap.open_ingest(tx);
        let watch =
            Watch { sources: Vec::new(), down_after: Duration::from_secs(60), store: None, layout: Arc::default() };
        let now = now_micros();
        let brief = Health::new(watch.clone(), tap.clone());
        brief.sample_at(now - 5_000_000);
        assert!(brief.readiness().0, "full for 5 s is back-pressure, not saturation");
        let h = Health::new(watch, tap);
        h.sample_at(now - 11_000_000);
        h.sample_at(now - 1_000_000);
        let (ready, body) = h.readiness();
        assert!(!ready);
        assert_eq!(body["checks"]["queue"], serde_json::json!({"batches": 2, "capacity": 2, "saturated": true}));
        assert!(
            body["problems"][0].as_str().unwrap().starts_with("queue: the ingest queue has been full (2 batches)"),
            "{body}"
        );
        // One slot free at the next look: not saturated any more.
        rx.try_recv().unwrap();
        h.sample_at(now);
        assert!(h.readiness().0, "{}", h.readiness().1);
    }
}
