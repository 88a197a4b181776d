//! `edgeguard collect`: a fleet's forwarded records into a lake of Parquet
//! files, acknowledged on the hub only once they are in the lake.
//!
//! ```text
//!   hub (JetStream, durable consumer) ──pull──▶ lake rows (open Parquet files, one per partition)
//!        ▲                                          │ roll: max_rows, max_age, or the end
//!        └──── ack every message of the roll ◀── put each file once (folder | S3, create-only)
//! ```
//!
//! - **At least once.** A message is acknowledged after every file holding
//!   its rows is written. A collector killed before that leaves its
//!   messages unacknowledged: the hub delivers them again (to another
//!   collector on the same consumer, after `ack_wait`). A file written twice
//!   under the same name is harmless (names come from content, `lake.rs`);
//!   rows written twice under other names are recognised by their dedup key
//!   (`site, gateway, epoch, commit_no, idx`) — the README's dedup view.
//! - **No coordination of our own.** Several collectors on one durable
//!   consumer share its messages; JetStream spreads them.
//! - **Waiting rows stay on the hub.** While a roll's rows wait (up to
//!   `roll.max_age`), their messages are kept from redelivery with progress
//!   acknowledgements every third of `ack_wait`; a roll also closes before
//!   the consumer's limit of unacknowledged messages would stop delivery.
//! - **A lake that fails** (unreachable, full) is retried with backoff
//!   (200 ms → 10 s); meanwhile the pulls stop once the few chunks between
//!   them and the roll are full (messages there may come again after
//!   `ack_wait`: duplicates the dedup view removes). Under `--once` the run
//!   gives up at `--timeout` and the data stays on the hub (exit 69).
//! - **A buffer that fails** (a write into a scratch file) is
//!   dropped whole and none of its messages is acknowledged.

pub mod dest;
pub mod lake;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::{AckKind, Acker};
use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::compile::{ExportTarget, NatsSourcePlan, ParquetPlan, Plan, SourceKind};
use crate::model::batch::Shutdown;
use crate::nats_client::{reconnect_delay, Login};
use crate::sources::nats::{self, Client, Delivered, NatsStats, PullContext, SharedStats};
use dest::{Dest, Put, PutError};
use lake::Lake;

/// Most messages waiting for one roll: under the 20,000 unacknowledged
/// messages the collector's consumer is created with, so delivery never stalls.
const MAX_PENDING: usize = 15_000;

/// How a collect run goes.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// The export to write (the only one when `None`).
    pub export: Option<String>,
    /// Read what is pending, write it, and exit.
    pub once: bool,
    /// `--once`: the longest the run takes.
    pub timeout: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct CollectReport {
    pub export: String,
    pub dest: String,
    pub sources: Vec<(String, NatsStats)>,
    pub rows: u64,
    pub rolls: u64,
    pub files: u64,
    /// Files whose name was in the lake already (written before: a retry).
    pub existing: u64,
    pub bytes: u64,
    pub acked: u64,
    /// Rows still waiting when the run ended (their messages will come again).
    pub unwritten: u64,
    pub interrupted: bool,
    pub last_error: Option<String>,
    /// The lake refused our credentials.
    pub refused: Option<String>,
}

/// Why collect could not run.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The spec does not fit the command (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A secret or TLS file is missing (exit 78).
    #[error("{0}")]
    Setup(String),
    /// The runtime or the scratch folder could not start (exit 70).
    #[error("{0}")]
    Internal(String),
}

/// The export of the run.
fn pick(plan: &Plan, want: Option<&str>) -> Result<(String, ParquetPlan), CollectError> {
    let chosen = match want {
        Some(id) => plan.export.iter().find(|e| e.id == id).ok_or_else(|| {
            let known: Vec<&str> = plan.export.iter().map(|e| e.id.as_str()).collect();
            CollectError::Usage(format!("no export `{id}` in the spec (it has: {})", known.join(", ")))
        })?,
        None => match plan.export.as_slice() {
            [one] => one,
            [] => return Err(CollectError::Usage("the spec has no `export` section: nowhere to collect to".into())),
            many => {
                let ids: Vec<&str> = many.iter().map(|e| e.id.as_str()).collect();
                return Err(CollectError::Usage(format!(
                    "the spec has several exports ({}); choose one with --export",
                    ids.join(", ")
                )));
            }
        },
    };
    let ExportTarget::Parquet(p) = &chosen.kind;
    Ok((chosen.id.clone(), p.clone()))
}

/// The `nats` sources of the plan; collect reads nothing else.
fn sources(plan: &Plan) -> Result<Vec<(String, NatsSourcePlan)>, CollectError> {
    let mut out = Vec::new();
    for s in &plan.sources {
        match &s.kind {
            SourceKind::Nats(n) => out.push((s.id.clone(), n.clone())),
            SourceKind::Modbus(_) | SourceKind::Mqtt(_) | SourceKind::Serial(_) | SourceKind::Simulate(_) => {
                return Err(CollectError::Usage(format!(
                    "source `{}` is not a `nats` source; collect reads a fleet's hub (run the others with acquire or serve)",
                    s.id
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(CollectError::Usage("the spec has no `nats` source to collect from".into()));
    }
    Ok(out)
}

/// Runs collect until a signal (or, with `--once`, until nothing is pending).
pub fn run(plan: &Plan, opts: &CollectOptions, bar: Option<ProgressBar>) -> Result<CollectReport, CollectError> {
    let sources = sources(plan)?;
    let (export, parquet) = pick(plan, opts.export.as_deref())?;
    let dest = Dest::open(&parquet.dest).map_err(|e| CollectError::Setup(format!("export `{export}`: {e}")))?;
    let mut logins = Vec::new();
    for (id, s) in &sources {
        logins.push(Login::new(&s.conn).map_err(|e| CollectError::Setup(format!("source `{id}`: {e}")))?);
    }
    let lake = Lake::new(&parquet).map_err(|e| CollectError::Internal(format!("the scratch folder: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CollectError::Internal(format!("cannot start the runtime: {e}")))?;
    let shutdown = Shutdown::new();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    rt.spawn(crate::engine::signals::watch(shutdown.clone(), interrupted.clone()));

    let (tx, rx) = mpsc::channel::<Vec<Delivered>>(4);
    let mut stats: Vec<(String, SharedStats)> = Vec::new();
    let mut clients: Vec<Client> = Vec::new();
    let once = opts.once.then_some(opts.timeout);
    let mut pulls = Vec::new();
    for ((id, s), login) in sources.iter().zip(logins) {
        let st: SharedStats = Arc::new(Mutex::new(NatsStats::default()));
        let client: Client = Arc::new(Mutex::new(None));
        stats.push((id.clone(), st.clone()));
        clients.push(client.clone());
        let cx = PullContext { tx: tx.clone(), stop: shutdown.subscribe(), once, stats: st };
        let name = format!("edgeguard {} {id} (collect)", plan.name);
        pulls.push(rt.spawn(nats::pull(Arc::from(id.as_str()), s.clone(), login, name, client, cx)));
    }
    drop(tx);
    let ack_wait = sources.iter().map(|(_, s)| s.ack_wait).min().unwrap_or(Duration::from_secs(60));
    let mut c = Collector {
        lake,
        plan: parquet.clone(),
        dest,
        pending: Vec::new(),
        oldest: None,
        progressed: Instant::now(),
        ack_wait,
        deadline: opts.once.then(|| Instant::now() + opts.timeout),
        shutdown: shutdown.clone(),
        report: CollectReport { export, dest: parquet.dest.to_string(), ..CollectReport::default() },
        bar,
        seed: crate::model::time::now_micros() as u64 ^ u64::from(std::process::id()),
    };
    rt.block_on(async {
        c.drive(rx).await;
        for p in pulls {
            let _ = p.await;
        }
        for client in &clients {
            let c = client.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(c) = c {
                let _ = tokio::time::timeout(Duration::from_secs(5), c.flush()).await;
            }
        }
    });
    if let Some(b) = &c.bar {
        b.finish_and_clear();
    }
    let mut report = c.report;
    report.unwritten = c.lake.len();
    report.interrupted = interrupted.load(std::sync::atomic::Ordering::SeqCst);
    report.sources =
        stats.iter().map(|(id, s)| (id.clone(), s.lock().unwrap_or_else(|e| e.into_inner()).clone())).collect();
    Ok(report)
}

struct Collector {
    lake: Lake,
    plan: ParquetPlan,
    dest: Dest,
    /// The messages whose rows wait in the lake buffer.
    pending: Vec<Acker>,
    /// When the oldest waiting row arrived.
    oldest: Option<Instant>,
    /// When waiting messages were last kept from redelivery.
    progressed: Instant,
    ack_wait: Duration,
    deadline: Option<Instant>,
    shutdown: Shutdown,
    report: CollectReport,
    bar: Option<ProgressBar>,
    seed: u64,
}

impl Collector {
    async fn drive(&mut self, mut rx: mpsc::Receiver<Vec<Delivered>>) {
        loop {
            let roll_at = self.oldest.map(|t| t + self.plan.max_age);
            let progress_at = self.oldest.map(|_| self.progressed + self.ack_wait / 3);
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(chunk) => self.take(chunk),
                    None => break,
                },
                _ = crate::sources::sleep_until(roll_at) => {}
                _ = crate::sources::sleep_until(progress_at) => self.keep_pending().await,
            }
            let full = self.lake.len() >= self.plan.max_rows || self.pending.len() >= MAX_PENDING;
            let due = roll_at.is_some_and(|t| Instant::now() >= t);
            if (full || due) && !self.roll().await {
                break;
            }
        }
        // The sources are done (or the lake gave up): what waits is written now.
        if !self.pending.is_empty() {
            self.roll().await;
        }
        // Stops the pulls when the lake gave up first.
        self.shutdown.trigger();
    }

    fn take(&mut self, chunk: Vec<Delivered>) {
        for d in chunk {
            let added = tokio::task::block_in_place(|| self.lake.add(&d.envelope, &d.records));
            if let Err(e) = added {
                tracing::error!("message {}: cannot gather its rows: {e}", d.envelope.id());
                self.poison();
                continue;
            }
            self.pending.push(d.acker);
            self.oldest.get_or_insert_with(Instant::now);
        }
        if let Some(b) = &self.bar {
            b.set_message(format!("{} rows waiting, {} written", self.lake.len(), self.report.rows));
            b.tick();
        }
    }

    /// The buffer may have lost rows (an append failed part way): start
    /// afresh and acknowledge none of the waiting messages — the hub delivers
    /// them again after `ack_wait`.
    fn poison(&mut self) {
        tracing::warn!(
            "export {}: dropping {} waiting messages unacknowledged; the hub sends them again",
            self.report.export,
            self.pending.len()
        );
        self.pending.clear();
        self.oldest = None;
        match Lake::new(&self.plan) {
            Ok(fresh) => self.lake = fresh,
            Err(e) => tracing::error!("export {}: the scratch folder: {e}", self.report.export),
        }
    }

    /// Progress acks: the waiting messages are being worked on.
    async fn keep_pending(&mut self) {
        for a in &self.pending {
            let _ = a.ack_with(AckKind::Progress).await;
        }
        self.progressed = Instant::now();
    }

    /// Writes the waiting rows and acknowledges their messages, retrying
    /// with backoff. False when it gave up (stop, deadline, refusal).
    async fn roll(&mut self) -> bool {
        let mut attempt = 0usize;
        loop {
            match self.try_roll().await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!("export {}: {e}; retrying (the messages stay on the hub)", self.report.export);
                    self.report.last_error = Some(e.to_string());
                    if let PutError::Refused(why) = &e {
                        self.report.refused = Some(why.clone());
                        return false;
                    }
                }
            }
            let wait = reconnect_delay(attempt, self.seed);
            attempt += 1;
            let now = Instant::now();
            if self.shutdown.is_triggered() || self.deadline.is_some_and(|d| now + wait >= d) {
                return false;
            }
            if now >= self.progressed + self.ack_wait / 3 {
                self.keep_pending().await;
            }
            let mut stop = self.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
    }

    async fn try_roll(&mut self) -> Result<(), PutError> {
        if self.lake.is_empty() {
            // Messages without rows for this lake (other tables): done.
            self.ack_all().await;
            return Ok(());
        }
        let written = tokio::task::block_in_place(|| self.lake.write());
        let result = match written {
            Err(e) => {
                // Rows may be lost from the buffer: nothing of it is acknowledged.
                self.poison();
                Err(PutError::Failed(e))
            }
            Ok(files) => {
                let mut out = Ok(());
                let (mut n, mut existing, mut bytes) = (0u64, 0u64, 0u64);
                for f in &files {
                    match self.dest.put(f).await {
                        Ok(Put::Written) => {
                            n += 1;
                            bytes += std::fs::metadata(&f.local).map(|m| m.len()).unwrap_or(0);
                        }
                        Ok(Put::AlreadyThere) => existing += 1,
                        Err(e) => {
                            out = Err(e);
                            break;
                        }
                    }
                }
                if out.is_ok() {
                    self.report.files += n;
                    self.report.existing += existing;
                    self.report.bytes += bytes;
                    tracing::info!(
                        "export {}: {} rows in {} files ({} there already)",
                        self.report.export,
                        self.lake.len(),
                        files.len(),
                        existing
                    );
                }
                out
            }
        };
        result?;
        self.report.rows += self.lake.len();
        self.report.rolls += 1;
        if let Err(e) = tokio::task::block_in_place(|| self.lake.clear()) {
            // The files are written and named by content: acknowledging is
            // right; a fresh buffer is needed all the same.
            tracing::error!("export {}: cannot clear the written rows: {e}", self.report.export);
            if let Ok(fresh) = Lake::new(&self.plan) {
                self.lake = fresh;
            }
        }
        self.ack_all().await;
        Ok(())
    }

    async fn ack_all(&mut self) {
        for a in self.pending.drain(..) {
            if a.ack().await.is_ok() {
                self.report.acked += 1;
            }
        }
        self.oldest = None;
    }
}
