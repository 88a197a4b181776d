//! The streaming engine every command runs, up to its own stage.
//!
//! ```text
//!  producer thread(s)            stage thread (caller)                 writer thread
//!  input / simulate / live ──▶ [bounded, batches] ──▶ validate ──▶ stdout ──▶ [bounded] ──▶ DuckDB
//! ```
//!
//! Records move in batches of a few thousand through bounded channels, so a
//! slow disk or a slow reader slows the producers down instead of growing
//! memory. CPU work (stages) is plain synchronous code on the caller's
//! thread; the store has its own thread; tokio runs only what waits on I/O
//! (live sources, timers, signals).
//!
//! Shutdown: the first SIGINT/SIGTERM stops the producers; everything already
//! read is processed, printed and committed, and the run ends normally. A
//! second signal exits at once (130/143).

mod live;
pub mod record;
pub mod tap;
pub mod time;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, watch};

use crate::compile::{Plan, SourceKind, StorePlan};
use crate::sinks::notify::{Delivery, Dispatcher};
use crate::sinks::stdout::{Output, OutputError};
use crate::sinks::store::{self, Store, StoreError, StoreStats};
use crate::sources::input::{self, InputFormat, InputStats};
use crate::sources::simulate::Simulator;
use crate::sources::sleep_until;
use crate::stages::alert::{AlertStats, Alerter, Silence};
use crate::stages::detect::{DetectStats, Detectors};
use crate::stages::fuse::{FuseStats, Fuser};
use crate::stages::validate::{ChannelValidator, ValidateStats};
use live::{live_sources, LiveSource, StatsHandle};
pub use live::{SourceReport, SourceStats};
use record::Record;

/// Batches waiting between producers and the stage thread.
const QUEUE: usize = 16;
/// Records per batch from the simulator.
const SIM_BATCH: usize = 4096;
/// Where channel-validation state is kept in the store's `state` table.
const STATE_COMPONENT: &str = "validate";
const STATE_KEY: &str = "channels";
/// Where detector state is kept.
const DETECT_COMPONENT: &str = "detect";
const DETECT_KEY: &str = "detectors";
/// Where alert state (pending, firing, last notified) and silences are kept.
pub const ALERT_COMPONENT: &str = "alert";
const ALERT_KEY: &str = "rules";
pub const SILENCES_KEY: &str = "silences";
/// Where the virtual clock starts unless a source sets `start`: 2026-01-01T00:00:00Z.
pub const VIRTUAL_EPOCH: time::Micros = 1_767_225_600_000_000;

/// How far a run goes (DESIGN.md §1): each command runs the engine up to its stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Channel validation (`acquire`, `validate --input`).
    Validate,
    /// … then fusion (`fuse`).
    Fuse,
    /// … then detection (`detect`).
    Detect,
    /// … then alert rules and notifiers (`alert`).
    Alert,
}

impl Stage {
    pub fn command(self) -> &'static str {
        match self {
            Stage::Validate => "acquire",
            Stage::Fuse => "fuse",
            Stage::Detect => "detect",
            Stage::Alert => "alert",
        }
    }
}

/// Records handed to the engine by a producer, and what to do once they are safe.
#[derive(Default)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Runs once every record of the batch is committed to the store, or
    /// written to the output when nothing is stored (never when the output
    /// failed). MQTT acknowledges its messages here: at-least-once delivery.
    pub on_commit: Option<CommitHook>,
}

pub type CommitHook = Box<dyn FnOnce() + Send>;

impl From<Vec<Record>> for Batch {
    fn from(records: Vec<Record>) -> Self {
        Batch { records, on_commit: None }
    }
}

/// Where records come from when not from the plan's sources.
pub struct InputOptions {
    pub path: String,
    pub format: InputFormat,
    pub max_line: usize,
}

/// A backtest: stored readings of `[since, until)` replayed through the detectors.
pub struct ReplayOptions {
    pub path: std::path::PathBuf,
    pub since: time::Micros,
    pub until: time::Micros,
}

/// How a run is bounded and where it writes.
pub struct RunOptions {
    pub input: Option<InputOptions>,
    pub replay: Option<ReplayOptions>,
    pub once: bool,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// The store to write, already resolved from `--store`/`--no-store`/spec.
    pub store: Option<StorePlan>,
    pub store_input: bool,
    pub progress: bool,
    /// With `once`: how long an MQTT source waits for every topic (default 10 s).
    pub timeout: Option<Duration>,
    pub stage: Stage,
    /// `serve`: what the HTTP side sees of the run.
    pub tap: Option<Arc<tap::Tap>>,
    /// Simulators pace in real time even with `duration` (`serve`).
    pub wall_clock: bool,
}

/// What a run did; the summary and exit code are derived from it.
#[derive(Debug, Default)]
pub struct RunReport {
    pub elapsed: Duration,
    pub input: Option<InputStats>,
    pub validate: ValidateStats,
    pub fuse: FuseStats,
    pub detect: DetectStats,
    pub alert: AlertReport,
    pub store: Option<StoreStats>,
    pub other_records: u64,
    /// A signal stopped the producers before they ended on their own.
    pub interrupted: bool,
    /// The stdout reader went away.
    pub output_closed: bool,
    /// Counters of each device source, in spec order.
    pub sources: Vec<SourceReport>,
}

/// What the alert stage did.
#[derive(Debug, Default, Clone)]
pub struct AlertReport {
    pub stats: AlertStats,
    /// Deliveries (notification × notifier) that went out, and that failed
    /// after their retries.
    pub sent: u64,
    pub failed: u64,
    /// Notifier templates that failed and sent their fallback text.
    pub fallbacks: u64,
}

#[derive(Debug)]
pub enum EngineError {
    Store(StoreError),
    /// The input could not be opened or read.
    Input(String, std::io::Error),
    /// Writing the output failed (not a closed pipe).
    Output(std::io::Error),
    /// The run cannot start as asked (no sources and no `--input`).
    Usage(String),
    /// A source could not be set up: a secret or TLS file is missing.
    Setup(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Store(e) => e.fmt(f),
            EngineError::Input(p, e) => write!(f, "cannot read {p}: {e}"),
            EngineError::Output(e) => write!(f, "cannot write output: {e}"),
            EngineError::Usage(s) | EngineError::Setup(s) => f.write_str(s),
        }
    }
}

/// The shutdown signal shared by every part of a run.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown { flag: Arc::new(AtomicBool::new(false)), tx: Arc::new(watch::channel(false).0) }
    }
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

/// Runs the pipeline of `plan` through channel validation.
/// Trains the detectors that learn from history (`iforest`) on the stored
/// readings before `before` of every channel they follow and have not
/// trained on yet.
fn warm_up(
    detectors: &mut Detectors,
    conn: &duckdb::Connection,
    before: time::Micros,
    path: &std::path::Path,
) -> Result<(), EngineError> {
    let fail = |e: duckdb::Error| EngineError::Input(path.display().to_string(), std::io::Error::other(e));
    let known = crate::sources::replay::channels(conn).map_err(fail)?;
    let wanted: Vec<(String, Option<Duration>, usize)> =
        detectors.wanting_history(&known).into_iter().map(|(c, d, n)| (c.to_string(), d, n)).collect();
    let mut trained = 0;
    for (channel, span, limit) in wanted {
        let since = span.map_or(i64::MIN, |d| before.saturating_sub(d.as_micros() as i64));
        let history = crate::sources::replay::history(conn, &channel, since, before, limit).map_err(fail)?;
        if !history.is_empty() {
            trained += 1;
            detectors.warm_up(&channel, &history);
        }
    }
    if trained > 0 {
        tracing::info!(channels = trained, "detectors trained on the store's history");
    }
    Ok(())
}

pub fn run(plan: &Plan, opts: RunOptions, output: &mut Output) -> Result<RunReport, EngineError> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| EngineError::Input("the runtime".into(), e))?;
    let shutdown = Shutdown::new();
    let interrupted = Arc::new(AtomicBool::new(false));
    rt.spawn(watch_signals(shutdown.clone(), interrupted.clone()));

    // Open the store before any source starts: a locked store fails at once.
    let store = match &opts.store {
        Some(s) => Some(Store::open(&s.path, s.retention).map_err(EngineError::Store)?),
        None => None,
    };
    // Live runs continue the channel state of the previous run (cron with
    // --once behaves like the daemon). Replays (--input) and virtual-clock
    // simulations live in their own time and neither read nor write it.
    // Sources that talk to devices run on the wall clock; only a pipeline of
    // simulators alone runs on the virtual clock with --duration/--count.
    let has_devices = plan.sources.iter().any(|s| !matches!(s.kind, SourceKind::Simulate(_)));
    let virtual_clock =
        !opts.wall_clock && opts.input.is_none() && !has_devices && (opts.duration.is_some() || opts.count.is_some());
    let live = opts.input.is_none() && opts.replay.is_none() && !virtual_clock;
    let saved_detectors = match &store {
        Some(st) if live && opts.stage >= Stage::Detect => {
            st.load_state(DETECT_COMPONENT, DETECT_KEY).map_err(EngineError::Store)?
        }
        _ => None,
    };
    let mut detectors =
        Detectors::new(if opts.stage >= Stage::Detect { &plan.detect } else { &[] }).map_err(EngineError::Usage)?;
    if let Some(state) = saved_detectors {
        detectors.restore_state(&state);
    }
    if let (Some(st), true) = (&store, live && !detectors.is_empty()) {
        let conn = st.reader().map_err(EngineError::Store)?;
        warm_up(&mut detectors, &conn, time::now_micros(), &st.path)?;
    }
    // Alert state is kept by live runs and --input runs with a store:
    // notifications are side effects that must not repeat.
    let mut alerter =
        Alerter::new(if opts.stage >= Stage::Alert { &plan.alerts } else { &[] }).map_err(EngineError::Usage)?;
    // Simulations on the virtual clock live in their own time: they neither
    // read nor write it.
    let keeps_alert_state = !alerter.is_empty() && (live || opts.input.is_some());
    if let (Some(st), true) = (&store, keeps_alert_state) {
        if let Some(saved) = st.load_state(ALERT_COMPONENT, ALERT_KEY).map_err(EngineError::Store)? {
            alerter.restore_state(&saved);
        }
        for s in load_silences(st)? {
            alerter.silence(s);
        }
    }
    let mut dispatcher = match alerter.is_empty() {
        true => None,
        false => Some(Dispatcher::start(rt.handle(), &plan.notifiers).map_err(EngineError::Setup)?),
    };
    let saved_state = match &store {
        Some(st) if live => st.load_state(STATE_COMPONENT, STATE_KEY).map_err(EngineError::Store)?,
        _ => None,
    };

    let (tx, mut rx) = mpsc::channel::<Batch>(QUEUE);
    if let Some(t) = &opts.tap {
        t.open_ingest(tx.clone());
    }
    let mut source_stats: Vec<(String, StatsHandle)> = Vec::new();
    let mut live_tasks = Vec::new();
    let (finished_tx, finished_rx) = watch::channel(false);
    let progress = Arc::new(AtomicU64::new(0));
    let mut input_handle = None;
    let bar;

    if let Some(rp) = &opts.replay {
        // Read through the writer's database when anomalies go to the same
        // file (one process may not open it twice), else read-only.
        let conn = match &store {
            Some(s) if s.path == rp.path => s.reader(),
            _ if !rp.path.exists() => {
                let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such store");
                return Err(EngineError::Input(rp.path.display().to_string(), missing));
            }
            _ => store::open_reader(&rp.path),
        }
        .map_err(EngineError::Store)?;
        let total = crate::sources::replay::count(&conn, rp.since, rp.until)
            .map_err(|e| EngineError::Input(rp.path.display().to_string(), std::io::Error::other(e)))?;
        // A backtest's forests train on what came before it.
        warm_up(&mut detectors, &conn, rp.since, &rp.path)?;
        bar = make_bar(opts.progress, Some(total), "replaying");
        let (since, until, stop, prog) = (rp.since, rp.until, shutdown.flag.clone(), progress.clone());
        let path = rp.path.display().to_string();
        input_handle = Some(std::thread::spawn(move || {
            let mut emit = |b: Vec<Record>| tx.blocking_send(b.into()).is_ok();
            let n = crate::sources::replay::replay(&conn, since, until, &stop, &prog, &mut emit)
                .map_err(|e| std::io::Error::other(format!("{path}: {e}")))?;
            Ok(InputStats { lines: n, records: n, rejected: 0, bytes: 0 })
        }));
    } else if let Some(inp) = &opts.input {
        let (reader, len) = input::open(&inp.path).map_err(|e| EngineError::Input(display_path(&inp.path), e))?;
        bar = make_bar(opts.progress, len, "reading");
        let (format, max_line, stop, prog) = (inp.format, inp.max_line, shutdown.flag.clone(), progress.clone());
        let max_records = opts.count;
        let name = if inp.path == "-" { "stdin".to_string() } else { "input".to_string() };
        input_handle = Some(std::thread::spawn(move || {
            let mut reported = 0u64;
            let mut reject = |n: u64, why: &str| {
                reported += 1;
                if reported <= input::REPORTED_REJECTIONS {
                    tracing::warn!("line {n}: {why}");
                } else if reported == input::REPORTED_REJECTIONS + 1 {
                    tracing::warn!("more rejected lines; only counting them from here");
                }
            };
            let mut emit = |b: Vec<Record>| tx.blocking_send(b.into()).is_ok();
            input::read_records(reader, format, max_line, max_records, &name, &stop, &prog, &mut reject, &mut emit)
        }));
    } else {
        // On the virtual clock runs start at a fixed time so they repeat exactly.
        let start = if virtual_clock { VIRTUAL_EPOCH } else { time::now_micros() };
        let sims = simulators(plan, start);
        let lives = live_sources(plan, &mut source_stats)?;
        if sims.is_empty() && lives.is_empty() {
            return Err(EngineError::Usage("the pipeline has no sources; give records with `--input FILE|-`".into()));
        }
        bar = if virtual_clock && !opts.once {
            let total = opts.count.or_else(|| {
                opts.duration.map(|d| {
                    sims.iter()
                        .map(|s| (d.as_micros() as u64).div_ceil(s.interval_us() as u64) * s.signal_count() as u64)
                        .sum()
                })
            });
            make_bar(opts.progress, total, "simulating")
        } else {
            make_bar(false, None, "")
        };
        if virtual_clock || opts.once {
            if !sims.is_empty() {
                let (stop, prog, tx) = (shutdown.flag.clone(), progress.clone(), tx.clone());
                let (once, duration, count) = (opts.once, opts.duration, opts.count);
                std::thread::spawn(move || run_virtual(sims, once, duration, count, &stop, &prog, tx));
            }
        } else {
            for mut sim in sims {
                let (tx, mut stop) = (tx.clone(), shutdown.subscribe());
                rt.spawn(async move {
                    let period = Duration::from_micros(sim.interval_us() as u64);
                    let mut ticker = tokio::time::interval(period);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        tokio::select! {
                            _ = ticker.tick() => {}
                            _ = stop.wait_for(|stopped| *stopped) => break,
                        }
                        let mut batch = Vec::with_capacity(sim.signal_count());
                        sim.tick_at(time::now_micros(), &mut batch);
                        if tx.send(batch.into()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }
        let once_wait = opts.once.then(|| opts.timeout.unwrap_or(Duration::from_secs(10)));
        for live in lives {
            let (tx, stop) = (tx.clone(), shutdown.subscribe());
            live_tasks.push(match live {
                LiveSource::Modbus(p) => rt.spawn(p.run(opts.once, tx, stop)),
                LiveSource::Mqtt(s) => rt.spawn(s.run(once_wait, tx, stop, finished_rx.clone())),
                LiveSource::Serial(s) => rt.spawn(s.run(once_wait, tx, stop)),
            });
        }
        if !virtual_clock && !opts.once {
            // Wall-clock ticks so silent channels are reported stale.
            let (tx, mut stop) = (tx.clone(), shutdown.subscribe());
            rt.spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = stop.wait_for(|stopped| *stopped) => break,
                    }
                    if tx.send(Batch::default()).await.is_err() {
                        break;
                    }
                }
            });
            if let Some(d) = opts.duration {
                // A wall-clock run of a fixed length ends like a signal: drain and commit.
                let shutdown = shutdown.clone();
                rt.spawn(async move {
                    tokio::time::sleep(d).await;
                    shutdown.trigger();
                });
            }
        }
        drop(tx);
    }

    if let (Some(t), Some(st)) = (&opts.tap, &store) {
        t.set_reader(st.reader().map_err(EngineError::Store)?, st.path.clone());
    }
    // The writer thread.
    let (store_tx, store_handle) = match (store, &opts.store) {
        (Some(store), Some(sp)) => {
            let (stx, srx) = std::sync::mpsc::sync_channel::<(Vec<Record>, Option<CommitHook>)>(4);
            let cfg = store::WriterConfig {
                batch: sp.batch,
                flush: sp.flush,
                retention: sp.retention,
                store_input: opts.store_input,
                tap: opts.tap.clone(),
            };
            (Some(stx), Some(std::thread::spawn(move || store::run_writer(store, srx, cfg))))
        }
        _ => (None, None),
    };

    let mut report = RunReport::default();
    let mut validator = ChannelValidator::new(&plan.channels);
    if let Some(state) = saved_state {
        validator.restore_state(&state);
    }
    if live {
        validator.expect_named_channels(time::now_micros());
    }
    let mut stop_rx = shutdown.subscribe();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut gave_up_waiting = false;
    let mut out_batch: Vec<Record> = Vec::new();
    let mut fuser = Fuser::new(if opts.stage >= Stage::Fuse { &plan.fuse } else { &[] });
    let mut validated: Vec<Record> = Vec::new();
    let mut fused: Vec<Record> = Vec::new();
    let mut output_error = None;
    let mut live_taken = 0u64;
    let mut notes = Vec::new();
    if let Some(t) = &opts.tap {
        t.set_sources(source_stats.iter().map(|(id, h)| (id.clone(), h.clone())).collect());
        t.ready.store(true, Ordering::Relaxed);
    }
    loop {
        if let (Some(t), true) = (&opts.tap, shutdown.flag.load(Ordering::Relaxed)) {
            // Stopping: posted readings must not keep the queue full forever.
            t.close_ingest();
        }
        let next = rt.block_on(async {
            tokio::select! {
                biased;
                b = rx.recv() => Some(b),
                _ = stop_rx.wait_for(|stopped| *stopped), if deadline.is_none() => None,
                _ = sleep_until(deadline), if deadline.is_some() => {
                    gave_up_waiting = true;
                    Some(None)
                }
            }
        });
        // The end of the stream still goes once through the stages (fusion
        // closes its open rounds).
        let (batch, ending) = match next {
            Some(Some(b)) => (b, false),
            Some(None) => (Batch::default(), true),
            None => {
                if let Some(t) = &opts.tap {
                    t.close_ingest();
                }
                // Producers were told to stop; give them a moment to hand over
                // what they have read, then finish.
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                continue;
            }
        };
        let Batch { records: mut batch, on_commit } = batch;
        if let (Some(max), true) = (opts.count, live) {
            // A wall-clock run of N readings: take N, then drain like a signal.
            let left = max.saturating_sub(live_taken);
            if batch.len() as u64 >= left {
                batch.truncate(left as usize);
                shutdown.trigger();
                if batch.is_empty() {
                    continue;
                }
            }
            live_taken += batch.len() as u64;
        }
        // validation → fusion → detection, each passing on what it got.
        out_batch.clear();
        validated.clear();
        if ending {
            fuser.flush(&mut validated);
        } else if batch.is_empty() {
            let now = time::now_micros();
            validator.tick(now, &mut validated);
            fuser.tick(now, &mut validated);
        } else if opts.replay.is_some() {
            // Stored readings were validated and fused when they were stored.
            validated = batch;
        } else if fuser.is_empty() {
            validator.process(batch, &mut validated);
        } else {
            let mut checked = Vec::with_capacity(batch.len());
            validator.process(batch, &mut checked);
            fuser.process(checked, &mut validated);
        }
        if detectors.is_empty() {
            std::mem::swap(&mut out_batch, &mut validated);
        } else {
            fused.clear();
            std::mem::swap(&mut fused, &mut validated);
            detectors.process(std::mem::take(&mut fused), &mut out_batch);
        }
        let mut deliveries: Vec<Record> = Vec::new();
        if let Some(d) = dispatcher.as_mut() {
            notes.clear();
            alerter.process(&out_batch, &mut notes);
            for n in &notes {
                d.send(n);
                out_batch.push(Record::Other {
                    kind: "alert".into(),
                    line: n.record.to_string().into_boxed_str(),
                    from_input: false,
                });
            }
            let done = if ending { d.finish(&rt) } else { d.outcomes() };
            deliveries.extend(done.iter().map(delivery_record));
            if let Some(t) = &opts.tap {
                t.counters.notifications_sent.store(d.sent, Ordering::Relaxed);
                t.counters.notifications_failed.store(d.failed, Ordering::Relaxed);
            }
        }
        if let Some(t) = &opts.tap {
            t.counters.batches_waiting.store(rx.len() as u64, Ordering::Relaxed);
            if !out_batch.is_empty() {
                t.observe(&out_batch);
            }
        }
        if let (Some(stx), false) = (&store_tx, deliveries.is_empty()) {
            // The notification log: stored, never printed.
            let _ = stx.send((deliveries, None));
        }
        if out_batch.is_empty() && on_commit.is_none() {
            if ending {
                break;
            }
            continue;
        }
        report.other_records += out_batch.iter().filter(|r| !matches!(r, Record::Reading(_))).count() as u64;
        if !report.output_closed {
            let written = output.write_batch(&out_batch);
            // Nothing waiting: show what we have (live runs trickle).
            let written = written.and_then(|()| if rx.is_empty() { output.flush() } else { Ok(()) });
            if let Err(e) = written {
                // The reader left (or the disk is full): stop the sources, keep committing.
                report.output_closed = true;
                shutdown.trigger();
                if let OutputError::Io(e) = e {
                    output_error = Some(e);
                }
            }
        }
        if let Some(b) = &bar {
            b.set_position(match (&opts.input, &opts.replay) {
                (None, None) => validator.stats.readings,
                _ => progress.load(Ordering::Relaxed),
            });
        }
        if let Some(stx) = &store_tx {
            let batch = std::mem::take(&mut out_batch);
            if stx.send((batch, on_commit)).is_err() {
                // The writer died; its error is collected below.
                shutdown.trigger();
                break;
            }
        } else if let Some(hook) = on_commit {
            // Nothing stored: the records are safe once written out.
            if !report.output_closed && output.flush().is_ok() {
                hook();
            }
        }
        if ending {
            break;
        }
    }
    if !report.output_closed {
        match output.flush() {
            Ok(()) => {}
            Err(OutputError::Closed) => report.output_closed = true,
            Err(OutputError::Io(e)) => output_error = Some(e),
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    drop(rx);
    drop(store_tx);
    report.interrupted = interrupted.load(Ordering::SeqCst);

    report.validate = validator.stats;
    report.fuse = fuser.stats;
    report.detect = std::mem::take(&mut detectors.stats);
    report.alert.stats = alerter.stats.clone();
    if let Some(d) = &dispatcher {
        report.alert.sent = d.sent;
        report.alert.failed = d.failed;
        report.alert.fallbacks = d.fallbacks;
    }
    if let Some(h) = input_handle {
        // The producers closed the queue, so the thread is ending: wait for
        // its stats. Only one still blocked on a quiet stdin after a signal is
        // left behind; the lines it had read were handed over before it blocked.
        if !gave_up_waiting || h.is_finished() {
            match h.join() {
                Ok(Ok(stats)) => report.input = Some(stats),
                Ok(Err(e)) => {
                    let path = opts.input.as_ref().map_or("input".into(), |i| display_path(&i.path));
                    return Err(EngineError::Input(path, e));
                }
                Err(_) => {}
            }
        }
    }
    if let Some(h) = store_handle {
        match h.join() {
            Ok(Ok((store, stats))) => {
                if live {
                    store
                        .save_state(STATE_COMPONENT, STATE_KEY, &validator.save_state())
                        .map_err(EngineError::Store)?;
                    if !detectors.is_empty() {
                        store
                            .save_state(DETECT_COMPONENT, DETECT_KEY, &detectors.save_state())
                            .map_err(EngineError::Store)?;
                    }
                }
                if keeps_alert_state {
                    store.save_state(ALERT_COMPONENT, ALERT_KEY, &alerter.save_state()).map_err(EngineError::Store)?;
                }
                report.store = Some(stats);
            }
            Ok(Err((e, _))) => return Err(EngineError::Store(e)),
            Err(_) => {}
        }
    }
    // Everything is committed: sources that acknowledge (MQTT) send their
    // acks now and close; give them a few seconds.
    finished_tx.send_replace(true);
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(6), async {
            for t in live_tasks {
                let _ = t.await;
            }
        })
        .await;
    });
    report.sources =
        source_stats.iter().map(|(id, st)| SourceReport { id: id.clone(), stats: st.snapshot() }).collect();
    rt.shutdown_background();
    if let Some(e) = output_error {
        return Err(EngineError::Output(e));
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The silences kept in the store (`alert --silence`).
pub fn load_silences(store: &Store) -> Result<Vec<Silence>, EngineError> {
    let saved = store.load_state(ALERT_COMPONENT, SILENCES_KEY).map_err(EngineError::Store)?;
    Ok(saved.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())
}

/// A delivery outcome as a `delivery` record for the notification log.
fn delivery_record(d: &Delivery) -> Record {
    let mut row = d.record.clone();
    if let Some(m) = row.as_object_mut() {
        m.insert("notifier".into(), d.notifier.clone().into());
        m.insert("error".into(), d.error.clone().into());
        m.insert("attempts".into(), d.attempts.into());
    }
    Record::Other { kind: "delivery".into(), line: row.to_string().into_boxed_str(), from_input: false }
}

fn display_path(p: &str) -> String {
    if p == "-" {
        "standard input".into()
    } else {
        p.to_string()
    }
}

fn make_bar(enabled: bool, total: Option<u64>, what: &str) -> Option<ProgressBar> {
    if !enabled || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template("{msg} {bar:30} {percent:>3}% {binary_bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner(),
    };
    if what == "simulating" || what == "replaying" {
        bar.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} readings eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }
    bar.set_message(what.to_string());
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(10));
    Some(bar)
}

/// The simulators of a plan.
fn simulators(plan: &Plan, start: time::Micros) -> Vec<Simulator> {
    let mut out = Vec::new();
    for s in &plan.sources {
        if let SourceKind::Simulate(sim) = &s.kind {
            out.push(Simulator::new(&s.id, sim, start));
        }
    }
    out
}

/// Runs simulators on a virtual clock: samples in time order (ties in spec
/// order), as fast as the CPU allows, until `count` readings or `duration`.
/// With `once`, one sample of every signal, stamped now.
fn run_virtual(
    mut sims: Vec<Simulator>,
    once: bool,
    duration: Option<Duration>,
    count: Option<u64>,
    stop: &AtomicBool,
    progress: &AtomicU64,
    tx: mpsc::Sender<Batch>,
) {
    let mut batch = Vec::with_capacity(SIM_BATCH);
    if once {
        let now = time::now_micros();
        for s in &mut sims {
            s.tick_at(now, &mut batch);
        }
        let _ = tx.blocking_send(batch.into());
        return;
    }
    let start = sims.iter().map(Simulator::next_ts).min().unwrap_or(0);
    let end = duration.map(|d| start + d.as_micros() as i64);
    let mut produced = 0u64;
    while let Some(i) = (0..sims.len()).min_by_key(|&i| (sims[i].next_ts(), i)) {
        if end.is_some_and(|e| sims[i].next_ts() >= e) {
            break;
        }
        let before = batch.len();
        sims[i].tick(&mut batch);
        produced += (batch.len() - before) as u64;
        if let Some(c) = count {
            if produced >= c {
                batch.truncate(batch.len() - (produced - c) as usize);
                break;
            }
        }
        if batch.len() >= SIM_BATCH {
            progress.store(produced, Ordering::Relaxed);
            if tx.blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(SIM_BATCH)).into()).is_err()
                || stop.load(Ordering::Relaxed)
            {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch.into());
    }
}

/// First signal: stop producers and drain. Second: exit at once.
async fn watch_signals(shutdown: Shutdown, interrupted: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    interrupted.store(true, Ordering::SeqCst);
    shutdown.trigger();
    tracing::info!("stopping: finishing what was read and committing it (signal again to exit at once)");
    let code = tokio::select! {
        _ = term.recv() => 143,
        _ = int.recv() => 130,
    };
    std::process::exit(code);
}
