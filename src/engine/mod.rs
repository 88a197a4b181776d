//! The streaming engine every command runs, up to its own stage.
//!
//! ```text
//!  producers (threads, tasks)      engine thread (the caller)                      outputs
//!  --input / backtest / ──▶ [bounded queue] ──▶ validate → fuse → detect → alert ──▶ stdout
//!  simulators / live sources                    (the chain, plain sync code)   ├──▶ store writer thread
//!                                                                              ├──▶ notifier tasks
//!                                                                              └──▶ serve's tap
//! ```
//!
//! [`run`] goes through named phases, each in its own module:
//!
//! 1. open the store (a locked store fails before any source starts);
//! 2. build the [`chain`](chain::Chain) and restore the state this run
//!    keeps ([`state`]);
//! 3. start the producers ([`producers`]; simulators on the
//!    [`simulate`] driver);
//! 4. start the [`outputs`] (the writer thread, notifiers);
//! 5. drive batches through the chain into the outputs until the
//!    producers are done or told to stop ([`drive`]);
//! 6. drain: the last batch, the store's last commit, then save state and
//!    let live sources acknowledge and close.
//!
//! Records move in batches of a few thousand through bounded channels, so a
//! slow disk or a slow reader slows the producers down instead of growing
//! memory. CPU work is synchronous code on the caller's thread; the store has
//! its own thread; tokio runs only what waits on I/O (live sources, timers,
//! signals, notifiers).
//!
//! Shutdown: the first SIGINT/SIGTERM stops the producers; everything already
//! read is processed, printed and committed, and the run ends normally. A
//! second signal exits at once (130/143). The delivery rule is written down
//! in [`outputs`].

mod chain;
mod outputs;
mod producers;
pub(crate) mod signals;
mod simulate;
mod state;
pub mod tap;
mod verdict;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::compile::{Plan, StorePlan};
use crate::forward::{ForwardReport, Forwarders};
use crate::model::batch::{Batch, Shutdown};
use crate::model::time;
use crate::sinks::notify::Dispatcher;
use crate::sinks::stdout::Output;
use crate::sinks::store::{Floor, Retention, StateRow, Store, StoreError, StoreStats};
use crate::sources::input::{InputFormat, InputStats};
use crate::sources::SourceStats;
use crate::stages::alert::AlertStats;
use crate::stages::detect::DetectStats;
use crate::stages::fuse::FuseStats;
use crate::stages::validate::ValidateStats;
pub use chain::{Chain, Step};
use outputs::{Flow, Outputs};
use producers::{Clock, Producers};
use state::Keep;
pub use state::{load_silences, save_silences};
pub use verdict::{verdict, Policy, Verdict};

/// Batches waiting between producers and the stage thread.
const QUEUE: usize = 16;
/// Where the virtual clock starts unless a source sets `start`: 2026-01-01T00:00:00Z.
pub const VIRTUAL_EPOCH: time::Micros = 1_767_225_600_000_000;
/// How long producers that were told to stop have to hand over what they read.
const DRAIN: Duration = Duration::from_secs(2);
/// How long live sources have to acknowledge and close after the last commit.
const CLOSE: Duration = Duration::from_secs(6);
/// How long `--once` waits for what it waits on (an MQTT topic's first
/// message, a forward target's backlog) unless `--timeout` says otherwise.
const ONCE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long forward targets have to send what is left after the last
/// commit, unless `--timeout` says otherwise (default 10 s with `--once`).
const FORWARD_DRAIN: Duration = Duration::from_secs(5);

/// How far a run goes (docs/contract.md §1): each command runs the engine up to its stage.
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
    /// The caller watches the signals and stops the run through this
    /// (`serve`, which also stops a run to reload its spec). `None`: the
    /// run watches SIGINT/SIGTERM itself.
    pub shutdown: Option<Shutdown>,
    /// Stage state to continue from instead of the store's: the state the
    /// previous run of a reloaded spec ended with.
    pub resume: Option<Vec<StateRow>>,
    /// The process exits when the run returns: the store is checkpointed
    /// and left to the operating system ([`Store::close_for_exit`]).
    pub exits: bool,
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
    /// What each forward target did, in spec order.
    pub forward: Vec<ForwardReport>,
    /// The stage state the run kept, as it ended (a reload continues from it).
    pub state: Vec<StateRow>,
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

/// What one live source did.
#[derive(Debug, Clone)]
pub struct SourceReport {
    pub id: String,
    pub stats: SourceStats,
}

/// Why a run could not start or finish. Each variant has its exit status
/// (`cli::exit`, docs/contract.md §5).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store could not be opened or written (75 locked, 74 I/O, 1 incompatible).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the store failed (a backtest, detector warm-up): exit 74.
    #[error("cannot read the store {path}: {cause}", path = .0.display(), cause = .1)]
    StoreRead(std::path::PathBuf, #[source] duckdb::Error),
    /// The input could not be opened or read (66 missing, 77 denied, else 74).
    #[error("cannot read {0}: {1}")]
    Input(String, #[source] std::io::Error),
    /// Writing the output failed (not a closed pipe): exit 74.
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    /// The run cannot start as asked (no sources and no `--input`): exit 2.
    #[error("{0}")]
    Usage(String),
    /// A source or notifier could not be set up: a secret or TLS file is missing (exit 78).
    #[error("{0}")]
    Setup(String),
    /// The async runtime could not be built: exit 70.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A bug: a thread of the run panicked (exit 70).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs `plan` up to `opts.stage`, printing records to `output`; see the
/// module docs for the phases.
pub fn run(plan: &Plan, opts: RunOptions, output: &mut Output) -> Result<RunReport, EngineError> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(EngineError::Runtime)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let shutdown = match &opts.shutdown {
        Some(s) => s.clone(),
        None => {
            let s = Shutdown::new();
            rt.spawn(signals::watch(s.clone(), interrupted.clone()));
            s
        }
    };

    // 1. The store, before any source starts: a locked store fails at once.
    let store = opts.store.as_ref().map(|s| Store::open(&s.path, retention(plan, s), s.rollups.clone())).transpose()?;
    // 2. The chain, with the state this run continues; the forward targets
    // (their secrets are read now: a missing one fails before any source starts).
    let clock = Clock::of(plan, &opts);
    let (mut chain, keep) = restore(plan, &opts, clock, store.as_ref())?;
    let forward = start_forward(plan, store.as_ref(), &rt)?;
    let notify = match chain.alerter.is_empty() {
        true => None,
        false => Some(Dispatcher::start(rt.handle(), &plan.notifiers).map_err(EngineError::Setup)?),
    };
    // 3. The producers.
    let (tx, rx) = mpsc::channel::<Batch>(QUEUE);
    if let Some(t) = &opts.tap {
        t.open_ingest(tx.clone());
    }
    let (finished_tx, finished_rx) = watch::channel(false);
    let producers =
        producers::start(plan, &opts, clock, &rt, &shutdown, store.as_ref(), &mut chain.detectors, tx, &finished_rx)?;
    // 4. The outputs.
    if let (Some(t), Some(st)) = (&opts.tap, &store) {
        if let Some(allowed) = t.store_confinement() {
            st.confine(&allowed)?;
        }
        t.set_reader(st.reader()?, st.path.clone(), st.tiers());
    }
    if let (Some(t), Some((_, f))) = (&opts.tap, &forward) {
        t.set_forward(f.stats.clone());
    }
    let (committed, forward) = forward.unzip();
    let mut outputs = Outputs::start(
        output,
        store.zip(opts.store.as_ref()),
        opts.store_input,
        notify,
        opts.tap.clone(),
        committed,
        shutdown.flag(),
    );
    if clock.live {
        chain.expect_named_channels();
    }
    if let Some(t) = &opts.tap {
        t.set_sources(producers.stats.clone());
        t.ready.store(true, Ordering::Relaxed);
    }
    // 5. Batches through the chain into the outputs.
    let checkpoint = Checkpoints {
        keep,
        every: if keep.any() && outputs.stores() { opts.store.as_ref().and_then(|s| s.checkpoint) } else { None },
    };
    let gave_up_waiting = drive(&mut chain, &mut outputs, rx, &opts, clock, &rt, &shutdown, &producers, checkpoint);
    if let Some(b) = &producers.bar {
        b.finish_and_clear();
    }
    // 6. Drain and save.
    let mut report = RunReport {
        interrupted: interrupted.load(Ordering::SeqCst),
        other_records: outputs.other_records,
        ..RunReport::default()
    };
    if let Some(d) = &outputs.notify {
        (report.alert.sent, report.alert.failed, report.alert.fallbacks) = (d.sent, d.failed, d.fallbacks);
    }
    // What was read is committed even when reading failed part way; the
    // reader's error then wins, and no state is saved for a run that did
    // not see all of its input.
    let input = join_reader(producers.reader, gave_up_waiting, &opts);
    if let Some(t) = &opts.tap {
        t.ready.store(false, Ordering::Relaxed);
        t.clear_reader();
    }
    let done = outputs.finish();
    report.input = input?;
    let done = done?;
    report.output_closed = done.stdout_closed;
    if let Some((store, stats)) = done.store {
        keep.save(&store, &chain)?;
        report.store = Some(stats);
        if opts.exits {
            store.close_for_exit();
        }
    }
    if keep.any() {
        report.state = keep.snapshot(&chain);
    }
    // The last commit is made: the targets send what is left.
    if let Some(f) = forward {
        let default = if opts.once { ONCE_TIMEOUT } else { FORWARD_DRAIN };
        report.forward = f.finish(opts.timeout.unwrap_or(default), &rt);
    }
    report.validate = chain.validator.stats;
    report.fuse = chain.fuser.stats;
    report.detect = std::mem::take(&mut chain.detectors.stats);
    report.alert.stats = chain.alerter.stats.clone();
    // Everything is committed: sources that acknowledge (MQTT) send their
    // acks now and close.
    finished_tx.send_replace(true);
    rt.block_on(async {
        let _ = tokio::time::timeout(CLOSE, async {
            for t in producers.live {
                let _ = t.await;
            }
        })
        .await;
    });
    report.sources =
        producers.stats.iter().map(|(id, st)| SourceReport { id: id.clone(), stats: st.snapshot() }).collect();
    rt.shutdown_background();
    if let Some(e) = done.stdout_error {
        return Err(EngineError::Output(e));
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The store's retention, with a floor for each forward target.
fn retention(plan: &Plan, store: &StorePlan) -> Option<Retention> {
    let floors = plan.forward.iter().map(|f| Floor { target: f.id.clone(), max_age: f.max_age }).collect();
    store.retention.map(|keep| Retention { keep, floors })
}

/// Starts the forward targets when there is a store to forward from; with
/// the sender the writer tells its commits to.
fn start_forward(
    plan: &Plan,
    store: Option<&Store>,
    rt: &tokio::runtime::Runtime,
) -> Result<Option<(watch::Sender<i64>, Forwarders)>, EngineError> {
    let (Some(st), Some(id), false) = (store, &plan.identity, plan.forward.is_empty()) else { return Ok(None) };
    let (tx, rx) = watch::channel(st.last_commit());
    let conns = plan.forward.iter().map(|_| st.reader()).collect::<Result<Vec<_>, _>>()?;
    let epoch = crate::forward::epoch(&conns[0]).map_err(|e| EngineError::StoreRead(st.path.clone(), e))?;
    let f = crate::forward::start(&plan.forward, id, &epoch, conns, &rx, rt.handle()).map_err(EngineError::Setup)?;
    Ok(Some((tx, f)))
}

/// Phase 2: the chain of this run's stages, with the state it keeps
/// restored from the store, and detectors trained on stored history.
fn restore(plan: &Plan, opts: &RunOptions, clock: Clock, store: Option<&Store>) -> Result<(Chain, Keep), EngineError> {
    let mut chain = Chain::new(plan, opts.stage, opts.input.is_some(), opts.replay.is_some())?;
    // Held notifications and groups wait on the records' time; idle ticks
    // move it on only when that is the wall clock.
    chain.alerter.wall_clock = clock.live;
    let keep = Keep::of(clock.live, opts.input.is_some(), &chain);
    keep.restore(store, opts.resume.as_deref(), &mut chain)?;
    if let Some(st) = store {
        if clock.live && !chain.detectors.is_empty() {
            let conn = st.reader()?;
            state::warm_up(&mut chain.detectors, &conn, time::now_micros(), &st.path)?;
        }
    }
    Ok((chain, keep))
}

/// When `drive` hands the store a snapshot of the stage state.
#[derive(Clone, Copy)]
struct Checkpoints {
    keep: Keep,
    /// `store.checkpoint`; `None`: this run keeps no state, stores nothing, or checkpoints are off.
    every: Option<Duration>,
}

/// Phase 5: takes batches from the queue through the chain into the
/// outputs until the producers close the queue, or were told to stop and
/// had [`DRAIN`] to hand over what they read. Returns whether it gave up
/// waiting for a producer (one blocked on a quiet stdin).
#[allow(clippy::too_many_arguments)]
fn drive(
    chain: &mut Chain,
    outputs: &mut Outputs,
    mut rx: mpsc::Receiver<Batch>,
    opts: &RunOptions,
    clock: Clock,
    rt: &tokio::runtime::Runtime,
    shutdown: &Shutdown,
    producers: &Producers,
    checkpoints: Checkpoints,
) -> bool {
    let mut stop_rx = shutdown.subscribe();
    let mut checkpointed = Instant::now();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut gave_up_waiting = false;
    let mut taken = 0u64;
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    loop {
        if let Some(t) = &opts.tap {
            t.heartbeat.beat();
        }
        if let (Some(t), true) = (&opts.tap, shutdown.is_triggered()) {
            // Stopping: posted readings must not keep the queue full forever.
            t.close_ingest();
        }
        let next = rt.block_on(async {
            tokio::select! {
                biased;
                b = rx.recv() => Some(b),
                _ = stop_rx.wait_for(|stopped| *stopped), if deadline.is_none() => None,
                _ = crate::sources::sleep_until(deadline), if deadline.is_some() => {
                    gave_up_waiting = true;
                    Some(None)
                }
            }
        });
        // The end of the stream still goes once through the stages (fusion
        // closes its open rounds).
        let (Batch { records: mut batch, mut on_commit }, ending) = match next {
            Some(Some(b)) => (b, false),
            Some(None) => (Batch::default(), true),
            None => {
                if let Some(t) = &opts.tap {
                    t.close_ingest();
                }
                deadline = Some(tokio::time::Instant::now() + DRAIN);
                continue;
            }
        };
        if let (Some(max), true) = (opts.count, clock.live) {
            // A wall-clock run of N readings: take N, then drain like a signal.
            let left = max.saturating_sub(taken);
            if batch.len() as u64 >= left {
                if batch.len() as u64 > left {
                    // Records were cut off: their messages are not acknowledged
                    // (the broker or hub sends them again), nor are the kept ones'.
                    on_commit = None;
                }
                batch.truncate(left as usize);
                shutdown.trigger();
                if batch.is_empty() {
                    // Not taken, so not acknowledged: a broker sends them again.
                    continue;
                }
            }
            taken += batch.len() as u64;
        }
        let step = match (ending, batch.is_empty()) {
            (true, _) => Step::End,
            (false, true) => Step::Tick(time::now_micros()),
            (false, false) => Step::Records(batch),
        };
        out.clear();
        notes.clear();
        chain.step(step, &mut out, &mut notes);
        if let Some(t) = &opts.tap {
            t.counters.batches_waiting.store(rx.len() as u64, Ordering::Relaxed);
        }
        // The state after this batch, every `store.checkpoint` and whenever an
        // alert changed state (its notification may be on its way: a restart
        // must not send it again). The end of the run saves it anyway.
        let checkpoint = match checkpoints.every {
            Some(every) if !ending => {
                let alerted = out.iter().any(|r| matches!(r, crate::model::record::Record::Alert(_)));
                (alerted || checkpointed.elapsed() >= every).then(|| {
                    checkpointed = Instant::now();
                    checkpoints.keep.snapshot(chain)
                })
            }
            _ => None,
        };
        let flow = outputs.deliver(std::mem::take(&mut out), &notes, on_commit, checkpoint, rx.is_empty(), ending, rt);
        if let Some(b) = &producers.bar {
            b.set_position(match (&opts.input, &opts.replay) {
                (None, None) => chain.validator.stats.readings,
                _ => producers.progress.load(Ordering::Relaxed),
            });
        }
        match flow {
            Flow::Go => {}
            Flow::Stop => shutdown.trigger(),
            Flow::Broken => {
                shutdown.trigger();
                break;
            }
        }
        if ending {
            break;
        }
    }
    gave_up_waiting
}

/// Waits for the reader thread's counts. The producers closed the queue,
/// so it is ending; only one still blocked on a quiet stdin after a signal
/// is left behind (the lines it had read were handed over before it blocked).
fn join_reader(
    reader: Option<std::thread::JoinHandle<std::io::Result<InputStats>>>,
    gave_up_waiting: bool,
    opts: &RunOptions,
) -> Result<Option<InputStats>, EngineError> {
    let Some(h) = reader else { return Ok(None) };
    if gave_up_waiting && !h.is_finished() {
        return Ok(None);
    }
    match h.join() {
        Ok(Ok(stats)) => Ok(Some(stats)),
        Ok(Err(e)) => {
            let path = opts.input.as_ref().map_or("input".into(), |i| display_path(&i.path));
            Err(EngineError::Input(path, e))
        }
        Err(_) => Err(EngineError::Internal("the input reader panicked".into())),
    }
}

fn display_path(p: &str) -> String {
    if p == "-" {
        "standard input".into()
    } else {
        p.to_string()
    }
}
