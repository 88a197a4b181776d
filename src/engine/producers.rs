//! Starting what feeds the stage chain: exactly one of a backtest (stored
//! readings), an `--input` reader, or the plan's sources (simulators and
//! live sources), plus the wall-clock ticker and a `--duration` timer.
//!
//! Every producer sends [`Batch`]es into one bounded queue and stops when
//! [`Shutdown`] triggers or the queue closes. Threads run what blocks (file
//! and store reads, the virtual clock); tokio tasks run what waits on I/O.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, watch};

use crate::compile::Plan;
use crate::model::batch::{Batch, Shutdown};
use crate::model::record::Record;
use crate::model::time;
use crate::sinks::store::{self, Store};
use crate::sources::input::{self, InputStats};
use crate::sources::{self, SourceContext, StatsHandle};
use crate::stages::detect::Detectors;

use super::simulate::{run_virtual, run_wall_clock, simulators};
use super::state::warm_up;
use super::{display_path, EngineError, RunOptions, VIRTUAL_EPOCH};

/// What was started, for the engine to watch and join.
pub(super) struct Producers {
    /// The thread reading `--input` or the store (a backtest): its counts, or why it failed.
    pub reader: Option<JoinHandle<std::io::Result<InputStats>>>,
    /// Live source tasks; they end once `finished` is sent (MQTT sends its acks first).
    pub live: Vec<tokio::task::JoinHandle<()>>,
    /// Each live source's counters, in spec order.
    pub stats: Vec<(String, StatsHandle)>,
    pub bar: Option<ProgressBar>,
    /// Records read so far by the reader or the virtual clock (the bar's position).
    pub progress: Arc<AtomicU64>,
}

/// The clock a run lives on, and what that says about its state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// Simulators alone with `--duration`/`--count`: samples stamped on a
    /// virtual clock from [`VIRTUAL_EPOCH`], as fast as the CPU allows.
    pub virtual_time: bool,
    /// On the wall clock and reading sources (not `--input`, not a backtest).
    pub live: bool,
}

impl Clock {
    /// Sources that talk to devices run on the wall clock; only a pipeline
    /// of simulators alone runs on the virtual clock with `--duration`/`--count`.
    pub fn of(plan: &Plan, opts: &RunOptions) -> Clock {
        let has_devices = plan.sources.iter().any(|s| !s.kind.is_simulated());
        let virtual_time = !opts.wall_clock
            && opts.input.is_none()
            && !has_devices
            && (opts.duration.is_some() || opts.count.is_some());
        Clock { virtual_time, live: opts.input.is_none() && opts.replay.is_none() && !virtual_time }
    }
}

/// Starts the producers of this run; they send into `tx`.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    plan: &Plan,
    opts: &RunOptions,
    clock: Clock,
    rt: &tokio::runtime::Runtime,
    shutdown: &Shutdown,
    store: Option<&Store>,
    detectors: &mut Detectors,
    tx: mpsc::Sender<Batch>,
    finished: &watch::Receiver<bool>,
) -> Result<Producers, EngineError> {
    let mut p = Producers { reader: None, live: Vec::new(), stats: Vec::new(), bar: None, progress: Arc::default() };
    if opts.replay.is_some() {
        start_replay(opts, shutdown, store, detectors, tx, &mut p)?;
    } else if opts.input.is_some() {
        start_input(opts, shutdown, tx, &mut p)?;
    } else {
        start_sources(plan, opts, clock, rt, shutdown, tx, finished, &mut p)?;
    }
    Ok(p)
}

/// A backtest: the stored readings of `[since, until)`, after the
/// forests trained on what came before.
fn start_replay(
    opts: &RunOptions,
    shutdown: &Shutdown,
    store: Option<&Store>,
    detectors: &mut Detectors,
    tx: mpsc::Sender<Batch>,
    p: &mut Producers,
) -> Result<(), EngineError> {
    let Some(rp) = &opts.replay else { return Ok(()) };
    // Read through the writer's database when anomalies go to the same
    // file (one process may not open it twice), else read-only.
    let conn = match store {
        Some(s) if s.path == rp.path => s.reader(),
        _ if !rp.path.exists() => {
            let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such store");
            return Err(EngineError::Input(rp.path.display().to_string(), missing));
        }
        _ => store::open_reader(&rp.path),
    }
    .map_err(EngineError::Store)?;
    let span = crate::sources::replay::span(&conn, rp.since, rp.until)
        .map_err(|e| EngineError::StoreRead(rp.path.clone(), e))?;
    warm_up(detectors, &conn, rp.since, &rp.path)?;
    p.bar = make_bar(opts.progress, Some(span.rows), "replaying");
    let (stop, prog) = (shutdown.flag(), p.progress.clone());
    let path = rp.path.display().to_string();
    p.reader = Some(std::thread::spawn(move || {
        let mut emit = |b: Vec<Record>| tx.blocking_send(b.into()).is_ok();
        let n = crate::sources::replay::replay(&conn, span, &stop, &prog, &mut emit)
            .map_err(|e| std::io::Error::other(format!("{path}: {e}")))?;
        Ok(InputStats { lines: n, records: n, rejected: 0, bytes: 0 })
    }));
    Ok(())
}

/// `--input FILE|-`: NDJSON or CSV lines, on a thread.
fn start_input(
    opts: &RunOptions,
    shutdown: &Shutdown,
    tx: mpsc::Sender<Batch>,
    p: &mut Producers,
) -> Result<(), EngineError> {
    let Some(inp) = &opts.input else { return Ok(()) };
    let (reader, len) = input::open(&inp.path).map_err(|e| EngineError::Input(display_path(&inp.path), e))?;
    p.bar = make_bar(opts.progress, len, "reading");
    let (format, max_line, stop, prog) = (inp.format, inp.max_line, shutdown.flag(), p.progress.clone());
    let max_records = opts.count;
    let name = if inp.path == "-" { "stdin".to_string() } else { "input".to_string() };
    p.reader = Some(std::thread::spawn(move || {
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
    Ok(())
}

/// The plan's simulators and live sources; on the wall clock also a
/// ticker (so silent channels are reported stale) and the `--duration` timer.
#[allow(clippy::too_many_arguments)]
fn start_sources(
    plan: &Plan,
    opts: &RunOptions,
    clock: Clock,
    rt: &tokio::runtime::Runtime,
    shutdown: &Shutdown,
    tx: mpsc::Sender<Batch>,
    finished: &watch::Receiver<bool>,
    p: &mut Producers,
) -> Result<(), EngineError> {
    // On the virtual clock runs start at a fixed time so they repeat exactly.
    let start = if clock.virtual_time { VIRTUAL_EPOCH } else { time::now_micros() };
    let sims = simulators(plan, start);
    let mut lives = Vec::new();
    for s in &plan.sources {
        if let Some(src) =
            sources::build(s, &plan.name).map_err(|e| EngineError::Setup(format!("source `{}`: {e}", s.id)))?
        {
            p.stats.push((s.id.clone(), src.stats()));
            lives.push(src);
        }
    }
    if sims.is_empty() && lives.is_empty() {
        return Err(EngineError::Usage("the pipeline has no sources; give records with `--input FILE|-`".into()));
    }
    if clock.virtual_time && !opts.once {
        let total = opts.count.or_else(|| {
            opts.duration.map(|d| {
                sims.iter()
                    .map(|s| (d.as_micros() as u64).div_ceil(s.interval_us() as u64) * s.signal_count() as u64)
                    .sum()
            })
        });
        p.bar = make_bar(opts.progress, total, "simulating");
    }
    if clock.virtual_time || opts.once {
        if !sims.is_empty() {
            let (stop, prog, tx) = (shutdown.flag(), p.progress.clone(), tx.clone());
            let (once, duration, count) = (opts.once, opts.duration, opts.count);
            std::thread::spawn(move || run_virtual(sims, once, duration, count, &stop, &prog, tx));
        }
    } else {
        for sim in sims {
            rt.spawn(run_wall_clock(sim, tx.clone(), shutdown.subscribe()));
        }
    }
    let once = opts.once.then(|| opts.timeout.unwrap_or(super::ONCE_TIMEOUT));
    for src in lives {
        let cx = SourceContext { tx: tx.clone(), stop: shutdown.subscribe(), once, finished: finished.clone() };
        p.live.push(rt.spawn(src.run(cx)));
    }
    if !clock.virtual_time && !opts.once {
        rt.spawn(tick_every_second(tx, shutdown.subscribe()));
        if let Some(d) = opts.duration {
            // A wall-clock run of a fixed length ends like a signal: drain and commit.
            let shutdown = shutdown.clone();
            rt.spawn(async move {
                tokio::time::sleep(d).await;
                shutdown.trigger();
            });
        }
    }
    Ok(())
}

/// Empty batches once a second: the chain's wall-clock tick.
async fn tick_every_second(tx: mpsc::Sender<Batch>, mut stop: watch::Receiver<bool>) {
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
}

/// A progress bar on stderr, only when it is a terminal.
fn make_bar(enabled: bool, total: Option<u64>, what: &str) -> Option<ProgressBar> {
    if !enabled || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let style = match (total, what) {
        (Some(_), "simulating" | "replaying") => {
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} readings eta {eta}")
        }
        (Some(_), _) => ProgressStyle::with_template("{msg} {bar:30} {percent:>3}% {binary_bytes_per_sec} eta {eta}"),
        (None, _) => Ok(ProgressStyle::default_spinner()),
    };
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(what.to_string());
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(10));
    Some(bar)
}
