//! Forward targets: the store's commits, sent on to a fleet's hub.
//!
//! The store is the outbox ([`crate::sinks::outbox`]): every commit has a
//! number, and each target keeps a cursor — the last commit its peer
//! acknowledged — in the store's `state` table. A target is an async task in
//! whichever process holds the store; it wakes on every commit, reads the
//! commits after its cursor back on its own connection, turns them into
//! messages ([`message`]) and publishes them through its [`Target`] (one
//! file per kind of peer: [`nats`], [`mqtt`]).
//!
//! ```text
//!   writer thread ──commit N──▶ watch ──▶ driver: backlog lane (cursor, split] oldest first, ≤ replay_rate
//!                                                 live lane    (split, newest]  in order
//!                                          ──▶ Target::publish … ack (in_flight at once) ──▶ cursor → state
//! ```
//!
//! - **Lanes.** What was committed before this run started, or before the
//!   driver got going again after an error, and not yet acknowledged is
//!   *backlog* and marked so (`Eg-Backlog: 1`); commits made since are *live*. The backlog goes
//!   first, so the stream holds every subject in commit order; when a
//!   `replay_rate` holds the backlog back, live commits go in between, so a
//!   capped replay never delays fresh data (consumers then order by
//!   `Eg-Commit`).
//! - **Read ahead.** The next chunk of backlog is read from the store and
//!   made into messages on a blocking thread while the chunk before it is
//!   being sent, so a drain is bound by the slower of the two, not their sum.
//! - **Cursor.** It moves over a commit only when every message of it and
//!   of every commit before it was acknowledged; it is saved at most every
//!   second and at the end. After a crash the unsaved tail is sent again
//!   with the same message ids, and the hub drops it as duplicates.
//! - **Errors.** Any failed publish ends the session: what is in flight is
//!   forgotten, the driver backs off (200 ms → 10 s, jitter) and starts over
//!   from the cursor.
//! - **Too old.** Commits older than `backlog.max_age` that were never
//!   acknowledged are skipped, their records counted as dropped, logged and
//!   reported: never silently.
//! - **End of a run.** When the writer has made its last commit the driver
//!   sends what is left, until its backlog is empty or the deadline passes
//!   (`--timeout` under `--once`); what is left stays for the next run.

pub mod message;
pub mod mqtt;
pub mod nats;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duckdb::Connection;
use tokio::sync::watch;

use crate::compile::{ForwardPlan, ForwardTarget, IdentityPlan};
use crate::model::channel::channel_matcher;
use crate::model::record::Record;
use crate::model::time::now_micros;
use crate::sinks::outbox::{self, Cursor, Kinds};
use crate::spec::RecordKind;
use message::{Message, Sender, Shape};

/// What a peer said about one message.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    /// Already stored (a re-send inside the hub's duplicate window).
    pub duplicate: bool,
}

/// Why a message did not get through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer could not be reached or did not answer in time; retried.
    #[error("{0}")]
    Unreachable(String),
    /// The peer refused our credentials or the subject (exit 77); retried,
    /// in case the operator fixes the permissions.
    #[error("refused: {0}")]
    Refused(String),
    /// The peer answered with an error about the message or its stream.
    #[error("{0}")]
    Rejected(String),
}

impl SendError {
    fn reason(&self) -> &'static str {
        match self {
            SendError::Unreachable(_) => "unreachable",
            SendError::Refused(_) => "refused",
            SendError::Rejected(_) => "rejected",
        }
    }
}

/// Resolves when the peer acknowledged one message.
pub type AckFuture = Pin<Box<dyn Future<Output = Result<Ack, SendError>> + Send>>;
type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One kind of peer. A new kind is a new file beside [`nats`] and an arm
/// in [`build`].
pub trait Target: Send + Sync {
    /// The spec's `type:`.
    fn kind(&self) -> &'static str;
    /// Connects unless connected; the client may reconnect on its own after.
    fn connect(&mut self) -> BoxFut<'_, Result<(), SendError>>;
    fn connected(&self) -> bool;
    /// Which server it is connected to, for the log.
    fn server(&self) -> Option<String>;
    /// Sends one message; the returned future waits for its acknowledgement.
    fn publish<'a>(&'a mut self, m: &'a Message, s: &'a Sender) -> BoxFut<'a, Result<AckFuture, SendError>>;
}

fn build(plan: &ForwardPlan, name: String, seed: u64) -> Result<Box<dyn Target>, String> {
    match &plan.kind {
        ForwardTarget::Nats(n) => Ok(Box::new(nats::Nats::new(n, name, plan.ack_timeout, seed)?)),
        ForwardTarget::Mqtt(m) => Ok(Box::new(mqtt::Mqtt::new(m, plan.ack_timeout, plan.in_flight)?)),
    }
}

/// What a target has done, readable while it runs (`/metrics`).
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub connected: AtomicBool,
    pub messages: AtomicU64,
    /// Records acknowledged, by kind (reading, anomaly, alert).
    pub records: [AtomicU64; 3],
    pub duplicates: AtomicU64,
    pub backlog_records: AtomicU64,
    /// Age of the oldest commit not yet acknowledged, in milliseconds (0: none).
    pub backlog_age_ms: AtomicU64,
    /// Records dropped for `backlog.max_age`, since the target was created.
    pub dropped: AtomicU64,
    pub cursor: AtomicI64,
    pub ack_micros: AtomicU64,
    pub acks: AtomicU64,
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    pub last_error: Mutex<Option<String>>,
    pub refused: Mutex<Option<String>>,
}

impl ForwardStats {
    fn error(&self, e: &SendError) {
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()).entry(e.reason()).or_default() += 1;
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        if let SendError::Refused(why) = e {
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        }
    }
}

/// What a target did in one run, for the summary and the exit status.
#[derive(Debug, Clone, Default)]
pub struct ForwardReport {
    pub id: String,
    pub kind: &'static str,
    pub messages: u64,
    pub records: u64,
    pub duplicates: u64,
    /// Records dropped in this run for `backlog.max_age`.
    pub dropped: u64,
    /// Records still waiting when the run ended.
    pub backlog: u64,
    pub last_error: Option<String>,
    pub refused: Option<String>,
}

/// Where the run is, as the engine tells its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Run,
    /// The writer made its last commit: send what is left until then.
    Drain(tokio::time::Instant),
}

/// The targets of one run.
pub struct Forwarders {
    tasks: Vec<tokio::task::JoinHandle<ForwardReport>>,
    phase: watch::Sender<Phase>,
    pub stats: Vec<(String, Arc<ForwardStats>)>,
}

/// Starts every target of the plan on `rt`. `conns` are one store
/// connection per target; `committed` tells each commit's number.
pub fn start(
    plans: &[ForwardPlan],
    identity: &IdentityPlan,
    epoch: &str,
    mut conns: Vec<Connection>,
    committed: &watch::Receiver<i64>,
    rt: &tokio::runtime::Handle,
) -> Result<Forwarders, String> {
    let (phase, phase_rx) = watch::channel(Phase::Run);
    let mut tasks = Vec::new();
    let mut stats = Vec::new();
    let seed = now_micros() as u64 ^ u64::from(std::process::id());
    for (i, plan) in plans.iter().enumerate() {
        let name = format!("edgeguard {}/{} {}", identity.site, identity.gateway, plan.id);
        let target =
            build(plan, name, seed.wrapping_add(i as u64)).map_err(|e| format!("forward target `{}`: {e}", plan.id))?;
        let mut globs = Vec::new();
        for c in &plan.channels {
            globs.push(channel_matcher(c).map_err(|e| format!("forward target `{}`: {e}", plan.id))?);
        }
        let st = Arc::new(ForwardStats::default());
        stats.push((plan.id.clone(), st.clone()));
        let driver = Driver {
            plan: plan.clone(),
            sender: Sender {
                site: identity.site.clone(),
                gateway: identity.gateway.clone(),
                epoch: epoch.to_string(),
                subject: plan.subject.clone(),
            },
            target,
            store: Arc::new(Mutex::new((conns.remove(0), outbox::Reader::default()))),
            stats: st,
            globs: Arc::new(globs),
            committed: committed.clone(),
            phase: phase_rx.clone(),
            committed_open: true,
            first_commit: *committed.borrow(),
            seed: seed.wrapping_add(i as u64),
        };
        tasks.push(rt.spawn(driver.run()));
    }
    Ok(Forwarders { tasks, phase, stats })
}

impl Forwarders {
    /// The writer is done: each target sends what is left until its backlog
    /// is empty or `deadline` passes; returns what each did.
    pub fn finish(self, deadline: Duration, rt: &tokio::runtime::Runtime) -> Vec<ForwardReport> {
        self.phase.send_replace(Phase::Drain(tokio::time::Instant::now() + deadline));
        rt.block_on(async {
            let mut out = Vec::new();
            for t in self.tasks {
                if let Ok(r) = t.await {
                    out.push(r);
                }
            }
            out
        })
    }
}

/// One message on its way, and when it left.
struct InFlight {
    message: Message,
    ack: AckFuture,
    sent: Instant,
}

/// What woke a session up.
enum Woke {
    Acked(Result<Ack, SendError>),
    Read(Result<Read, SendError>),
    WriterDone,
    Other,
}

/// Why a session ended.
enum End {
    /// Drained (or told to stop at the deadline).
    Done,
    Failed(SendError),
}

struct Driver {
    plan: ForwardPlan,
    sender: Sender,
    target: Box<dyn Target>,
    store: Arc<Mutex<(Connection, outbox::Reader)>>,
    stats: Arc<ForwardStats>,
    globs: Arc<Vec<globset::GlobMatcher>>,
    committed: watch::Receiver<i64>,
    phase: watch::Receiver<Phase>,
    /// The writer still commits (its end of `committed` is open).
    committed_open: bool,
    /// The last commit before this run: what is after it is this run's, live.
    first_commit: i64,
    seed: u64,
}

/// Most records read back from the store at once.
const CHUNK_RECORDS: u64 = 50_000;
/// How often the cursor is saved and the backlog gauges are refreshed.
const TICK: Duration = Duration::from_secs(1);

/// The state of one session: the lanes and what is in flight.
struct Session {
    /// Backlog lane: commits in `(backlog_after, split]` are still to be read.
    backlog_after: i64,
    split: i64,
    /// Live lane: commits up to it were read.
    live_after: i64,
    live: VecDeque<Message>,
    backlog: VecDeque<Message>,
    in_flight: VecDeque<InFlight>,
    /// Commits with messages not yet all acknowledged.
    outstanding: BTreeSet<i64>,
    /// The next chunk of backlog, read (and made into messages) on a
    /// blocking thread while the chunk before it is sent.
    reading: Option<tokio::task::JoinHandle<Result<Read, SendError>>>,
    /// Replay budget, in records.
    tokens: f64,
    refilled: Instant,
}

impl Driver {
    async fn run(mut self) -> ForwardReport {
        let id = self.plan.id.clone();
        let mut cursor = match self.blocking(move |conn, _| outbox::cursor(conn, &id)).await {
            Ok(c) => c,
            Err(e) => {
                let e = SendError::Rejected(format!("cannot read its cursor from the store: {e}"));
                tracing::error!("forward {}: {e}", self.plan.id);
                self.stats.error(&e);
                return self.report(0, 0);
            }
        };
        let dropped_before = cursor.dropped;
        self.stats.cursor.store(cursor.commit, Ordering::Relaxed);
        self.stats.dropped.store(cursor.dropped, Ordering::Relaxed);
        let mut backoff_attempt = 0usize;
        let mut logged: Option<String> = None;
        let first_commit = self.first_commit;
        let mut failed = false;
        loop {
            let deadline = match *self.phase.borrow() {
                Phase::Run => None,
                Phase::Drain(d) => Some(d),
            };
            if let Some(d) = deadline {
                if self.is_done(&cursor) || tokio::time::Instant::now() >= d {
                    break;
                }
            }
            // Draining, a connect attempt may not outlast the deadline.
            let connect = self.target.connect();
            let connected = match deadline {
                None => connect.await,
                Some(d) => tokio::time::timeout_at(d, connect)
                    .await
                    .unwrap_or_else(|_| Err(SendError::Unreachable("no connection before --timeout".into()))),
            };
            let result = match connected {
                Ok(()) => {
                    self.stats.connected.store(true, Ordering::Relaxed);
                    if logged.take().is_some() || backoff_attempt == 0 {
                        tracing::info!(
                            "forward {}: connected to {}",
                            self.plan.id,
                            self.target.server().unwrap_or_default()
                        );
                    }
                    // The first session's live commits are this run's; after
                    // an error, whatever waited meanwhile is backlog.
                    let live_from = if failed { *self.committed.borrow() } else { first_commit };
                    self.session(&mut cursor, live_from).await
                }
                Err(e) => End::Failed(e),
            };
            self.save(&cursor).await;
            // The gauges stay current while it waits to reconnect.
            self.refresh_backlog(&cursor).await;
            match result {
                End::Done => break,
                End::Failed(e) => {
                    failed = true;
                    self.stats.connected.store(self.target.connected(), Ordering::Relaxed);
                    self.stats.error(&e);
                    let wait = crate::nats_client::reconnect_delay(backoff_attempt, self.seed);
                    backoff_attempt += 1;
                    let text = e.to_string();
                    if logged.as_deref() != Some(&text) {
                        tracing::warn!("forward {}: {text}; retrying (the data waits in the store)", self.plan.id);
                        logged = Some(text);
                    }
                    // Draining, a refusal will not change before the deadline.
                    let draining = matches!(*self.phase.borrow(), Phase::Drain(_));
                    if draining && matches!(e, SendError::Refused(_)) {
                        break;
                    }
                    self.sleep_or_deadline(wait).await;
                    continue;
                }
            }
        }
        self.save(&cursor).await;
        self.refresh_backlog(&cursor).await;
        let dropped = cursor.dropped - dropped_before;
        let backlog = self.stats.backlog_records.load(Ordering::Relaxed);
        self.report(dropped, backlog)
    }

    fn report(&self, dropped: u64, backlog: u64) -> ForwardReport {
        let s = &self.stats;
        ForwardReport {
            id: self.plan.id.clone(),
            kind: self.target.kind(),
            messages: s.messages.load(Ordering::Relaxed),
            records: s.records.iter().map(|r| r.load(Ordering::Relaxed)).sum(),
            duplicates: s.duplicates.load(Ordering::Relaxed),
            dropped,
            backlog,
            last_error: s.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            refused: s.refused.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Runs `f` on the store connection off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut outbox::Reader) -> duckdb::Result<T> + Send + 'static,
    ) -> duckdb::Result<T> {
        blocking(self.store.clone(), f).await
    }

    /// Every commit the writer made is acknowledged.
    fn is_done(&self, cursor: &Cursor) -> bool {
        *self.committed.borrow() <= cursor.commit
    }

    async fn save(&self, cursor: &Cursor) {
        let (id, c) = (self.plan.id.clone(), *cursor);
        if let Err(e) = self.blocking(move |conn, _| outbox::save_cursor(conn, &id, &c)).await {
            tracing::warn!("forward {}: cannot save its cursor: {e}", self.plan.id);
        }
        self.stats.cursor.store(cursor.commit, Ordering::Relaxed);
    }

    async fn refresh_backlog(&self, cursor: &Cursor) {
        let after = cursor.commit;
        if let Ok((records, oldest)) = self.blocking(move |conn, _| outbox::backlog(conn, after)).await {
            self.stats.backlog_records.store(records, Ordering::Relaxed);
            let age = oldest.map_or(0, |ts| ((now_micros() - ts).max(1) / 1000) as u64);
            self.stats.backlog_age_ms.store(age, Ordering::Relaxed);
        }
    }

    async fn sleep_or_deadline(&mut self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let deadline = match *self.phase.borrow() {
                Phase::Run => None,
                Phase::Drain(d) => Some(d),
            };
            let until = deadline.map_or(until, |d| d.min(until));
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                changed = self.phase.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Sends until an error, or until drained at the end of the run.
    /// Backlog is what was committed before `live_from`.
    async fn session(&mut self, cursor: &mut Cursor, live_from: i64) -> End {
        let newest = live_from;
        let mut s = Session {
            backlog_after: cursor.commit,
            split: newest.max(cursor.commit),
            live_after: newest.max(cursor.commit),
            live: VecDeque::new(),
            backlog: VecDeque::new(),
            in_flight: VecDeque::new(),
            outstanding: BTreeSet::new(),
            reading: None,
            tokens: 0.0,
            refilled: Instant::now(),
        };
        let mut last_tick = Instant::now() - TICK;
        let mut saved = *cursor;
        loop {
            if last_tick.elapsed() >= TICK {
                self.stats.connected.store(self.target.connected(), Ordering::Relaxed);
                if *cursor != saved {
                    self.save(cursor).await;
                    saved = *cursor;
                }
                self.refresh_backlog(cursor).await;
                last_tick = Instant::now();
            }
            let newest = *self.committed.borrow_and_update();
            if let Err(e) = self.fill(&mut s, cursor, newest).await {
                return End::Failed(e);
            }
            // Send while the window has room: the backlog first, in commit
            // order, unless `replay_rate` holds it back; live commits then
            // go in between, so a capped replay never delays fresh data.
            let mut rate_wait: Option<Duration> = None;
            while s.in_flight.len() < self.plan.in_flight {
                let backlog_ok = match s.backlog.front().map(|m| m.count) {
                    None => false,
                    Some(count) => match self.budget(&mut s, count) {
                        Ok(()) => true,
                        Err(wait) => {
                            rate_wait = Some(wait);
                            false
                        }
                    },
                };
                if !backlog_ok && rate_wait.is_none() && s.backlog_after < s.split {
                    // More backlog to read before anything live may go.
                    break;
                }
                let next = if backlog_ok { s.backlog.pop_front() } else { s.live.pop_front() };
                let Some(m) = next else { break };
                // Handing the message to a client that lost its connection
                // waits for room in its buffer: not longer than an ack.
                let timeout = self.plan.ack_timeout;
                match tokio::time::timeout(timeout, self.target.publish(&m, &self.sender)).await {
                    Ok(Ok(ack)) => s.in_flight.push_back(InFlight { message: m, ack, sent: Instant::now() }),
                    Ok(Err(e)) => return End::Failed(e),
                    Err(_) => return End::Failed(SendError::Unreachable(format!("could not send within {timeout:?}"))),
                }
            }
            let idle = s.in_flight.is_empty() && s.live.is_empty() && s.backlog.is_empty();
            let backlog_done = s.backlog_after >= s.split;
            if idle && backlog_done && s.live_after >= newest {
                self.advance(&s, cursor);
                if let Phase::Drain(_) = *self.phase.borrow() {
                    return End::Done;
                }
            }
            let drain_deadline = match *self.phase.borrow() {
                Phase::Run => None,
                Phase::Drain(d) => Some(d),
            };
            let now = tokio::time::Instant::now();
            if drain_deadline.is_some_and(|d| now >= d) {
                return End::Done;
            }
            let mut wake = now + TICK;
            if let Some(w) = rate_wait {
                wake = wake.min(now + w);
            }
            if let Some(d) = drain_deadline {
                wake = wake.min(d);
            }
            let woke = {
                let front = s.in_flight.front_mut().map(|f| &mut f.ack);
                let has_front = front.is_some();
                let reading = s.reading.as_mut();
                let has_reading = reading.is_some();
                let committed_open = self.committed_open;
                tokio::select! {
                    biased;
                    acked = async { front.expect("checked").await }, if has_front => Woke::Acked(acked),
                    read = async { reading.expect("checked").await }, if has_reading => Woke::Read(
                        read.unwrap_or_else(|_| Err(SendError::Rejected("reading the store failed".into())))
                    ),
                    changed = self.committed.changed(), if committed_open => match changed {
                        Ok(()) => Woke::Other,
                        // The writer is done: no more commits.
                        Err(_) => Woke::WriterDone,
                    },
                    changed = self.phase.changed() => match changed {
                        Ok(()) => Woke::Other,
                        Err(_) => return End::Done,
                    },
                    _ = tokio::time::sleep_until(wake) => Woke::Other,
                }
            };
            match woke {
                Woke::Acked(Ok(ack)) => {
                    let f = s.in_flight.pop_front().expect("front exists");
                    self.acked(&mut s, cursor, f, ack);
                }
                Woke::Acked(Err(e)) => return End::Failed(e),
                Woke::Read(Ok(read)) => {
                    s.reading = None;
                    s.backlog_after = read.upto;
                    for (commit, msgs) in read.commits {
                        s.outstanding.insert(commit);
                        s.backlog.extend(msgs);
                    }
                }
                Woke::Read(Err(e)) => return End::Failed(e),
                Woke::WriterDone => self.committed_open = false,
                Woke::Other => {}
            }
        }
    }

    /// Whether a backlog message of `count` records may go now; if not, how
    /// long until it may.
    fn budget(&self, s: &mut Session, count: u64) -> Result<(), Duration> {
        let Some(rate) = self.plan.replay_rate else { return Ok(()) };
        let cap = rate.max(self.plan.max_records as f64);
        s.tokens = (s.tokens + s.refilled.elapsed().as_secs_f64() * rate).min(cap);
        s.refilled = Instant::now();
        let need = (count as f64).min(cap);
        if s.tokens >= need {
            s.tokens -= need;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - s.tokens) / rate))
        }
    }

    fn acked(&self, s: &mut Session, cursor: &mut Cursor, f: InFlight, ack: Ack) {
        let st = &self.stats;
        st.messages.fetch_add(1, Ordering::Relaxed);
        let k = RecordKind::ALL.iter().position(|k| *k == f.message.kind).unwrap_or(0);
        st.records[k].fetch_add(f.message.count, Ordering::Relaxed);
        if ack.duplicate {
            st.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        st.ack_micros.fetch_add(f.sent.elapsed().as_micros() as u64, Ordering::Relaxed);
        st.acks.fetch_add(1, Ordering::Relaxed);
        if f.message.last {
            s.outstanding.remove(&f.message.commit);
        }
        self.advance(s, cursor);
    }

    /// Moves the cursor over every commit that is read and acknowledged.
    fn advance(&self, s: &Session, cursor: &mut Cursor) {
        let read = if s.backlog_after < s.split { s.backlog_after } else { s.live_after };
        let acked = s.outstanding.first().map_or(read, |c| (c - 1).min(read));
        if acked > cursor.commit {
            cursor.commit = acked;
        }
    }

    /// Reads more commits into the lanes when they run low.
    async fn fill(&mut self, s: &mut Session, cursor: &mut Cursor, newest: i64) -> Result<(), SendError> {
        if s.live.is_empty() && newest > s.live_after {
            let (after, upto) = (s.live_after, newest);
            let read = self.read(after, upto, false).await?;
            s.live_after = read.upto;
            for (commit, msgs) in read.commits {
                s.outstanding.insert(commit);
                s.live.extend(msgs);
            }
        }
        // The backlog is read a chunk ahead of what is being sent.
        if s.reading.is_none() && s.backlog_after < s.split {
            // Never acknowledged and older than max_age: give up on them, and say so.
            let before = now_micros() - self.plan.max_age.as_micros().min(i64::MAX as u128) as i64;
            let after = s.backlog_after;
            let old = self
                .blocking(move |conn, _| outbox::older_than(conn, after, before))
                .await
                .map_err(|e| SendError::Rejected(format!("cannot read the store: {e}")))?;
            if let Some((upto, records)) = old {
                let upto = upto.min(s.split);
                if upto > s.backlog_after {
                    s.backlog_after = upto;
                    cursor.dropped += records;
                    self.stats.dropped.store(cursor.dropped, Ordering::Relaxed);
                    tracing::warn!(
                        "forward {}: dropped {records} records never forwarded and older than backlog.max_age ({})",
                        self.plan.id,
                        crate::model::quantity::format_duration(self.plan.max_age)
                    );
                    self.advance(s, cursor);
                }
            }
            if s.backlog_after < s.split {
                s.reading = Some(tokio::spawn(self.read(s.backlog_after, s.split, true)));
            }
        }
        Ok(())
    }

    /// Reads commits after `after` (up to `upto`, at most [`CHUNK_RECORDS`]
    /// records, at least one commit) and makes their messages.
    fn read(
        &self,
        after: i64,
        upto: i64,
        backlog: bool,
    ) -> impl Future<Output = Result<Read, SendError>> + Send + 'static {
        let kinds = Kinds {
            readings: self.plan.records.contains(&RecordKind::Reading),
            anomalies: self.plan.records.contains(&RecordKind::Anomaly),
            alerts: self.plan.records.contains(&RecordKind::Alert),
        };
        let shape = Shape {
            max_records: self.plan.max_records,
            max_bytes: self.plan.max_bytes,
            compression: self.plan.compression,
        };
        let globs = self.globs.clone();
        let read = blocking(self.store.clone(), move |conn, reader| {
            let infos = outbox::commits_after(conn, after, 4096)?;
            let mut end = after;
            let mut total = 0u64;
            for c in infos.iter().take_while(|c| c.commit_no <= upto) {
                if end > after && total + c.records > CHUNK_RECORDS {
                    break;
                }
                end = c.commit_no;
                total += c.records;
            }
            if infos.is_empty() || end == after {
                // No commit rows past `after` (gone with retention): nothing to read.
                return Ok(Read { upto: upto.max(after), commits: Vec::new() });
            }
            let keep =
                |r: &Record| globs.is_empty() || r.channel().is_some_and(|c| globs.iter().any(|g| g.is_match(c)));
            let commits = reader
                .read_commits(conn, after, end, kinds)?
                .into_iter()
                .map(|(commit, recs)| (commit, message::split(commit, &recs, &keep, shape, backlog)))
                .filter(|(_, msgs)| !msgs.is_empty())
                .collect();
            Ok(Read { upto: end, commits })
        });
        async move { read.await.map_err(|e| SendError::Rejected(format!("cannot read the store: {e}"))) }
    }
}

/// Runs `f` on the store connection off the async threads.
async fn blocking<T: Send + 'static>(
    store: Arc<Mutex<(Connection, outbox::Reader)>>,
    f: impl FnOnce(&Connection, &mut outbox::Reader) -> duckdb::Result<T> + Send + 'static,
) -> duckdb::Result<T> {
    tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        let (conn, reader) = &mut *guard;
        f(conn, reader)
    })
    .await
    .unwrap_or_else(|_| Err(duckdb::Error::AppendError))
}

struct Read {
    /// Every commit up to here was read.
    upto: i64,
    commits: Vec<(i64, Vec<Message>)>,
}

/// The store's epoch (16 hex digits, `meta.epoch`).
pub fn epoch(conn: &Connection) -> duckdb::Result<String> {
    conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))
}
