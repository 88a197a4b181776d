//! The `nats` source: a fleet's forwarded records, from a durable pull
//! consumer on a NATS JetStream stream.
//!
//! The gateways' forward targets publish one message per store commit (or
//! part of one) to `<prefix>.<site>.<gateway>.<kind>`; the envelope
//! ([`Envelope`]) says which gateway, store epoch, commit and records it
//! holds, and the body is the NDJSON records as printed (zstd when
//! `Content-Encoding` says so). [`pull`] connects, creates the durable
//! consumer when it is missing, and hands decoded messages ([`Delivered`])
//! on in chunks; each keeps the handle that acknowledges it. Two users:
//!
//! * [`NatsSource`], a live source of the engine: channels are renamed
//!   (`{site}.{gateway}.{channel}`), and the messages are acknowledged in the
//!   batch's commit hook — after the store committed their records, the
//!   MQTT source's contract. A crash before that makes the hub deliver them
//!   again (to this process or another on the same consumer).
//! * `collect`, which writes them to the Parquet lake and acknowledges
//!   after the upload.
//!
//! A message that cannot be read (no envelope, a body that does not
//! decompress, an envelope that names another gateway than its subject) is
//! terminated (`+TERM`: never delivered again), counted and logged: the
//! subject is what the hub's permissions vouch for, the headers are not.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::message::{AckKind, Acker};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{sleep_until, Source, SourceContext, SourceStats, Stats, StatsHandle};
use crate::compile::NatsSourcePlan;
use crate::model::batch::{Batch, CommitHook};
use crate::model::envelope::{self, Envelope};
use crate::model::intern::Interner;
use crate::model::ndjson::parse_ndjson_line;
use crate::model::record::Record;
use crate::model::time::now_micros;
use crate::nats_client::{reconnect_delay, refusal, ConnectFailure, Login, ServerErrors};

/// Records per chunk handed on.
pub const CHUNK_RECORDS: usize = 8192;
/// Longest a message waits for its chunk to fill.
pub const CHUNK_WAIT: Duration = Duration::from_millis(20);
/// Rejected messages logged one by one before only counting.
const REPORTED: u64 = 20;

/// One message, read: who sent it, its records (with the gateway's own
/// channel names), and the handle that acknowledges it.
pub struct Delivered {
    pub envelope: Envelope,
    pub records: Vec<Record>,
    pub acker: Acker,
}

/// Counters of one `nats` source (or collector).
#[derive(Debug, Default, Clone)]
pub struct NatsStats {
    pub messages: u64,
    pub records: u64,
    pub redelivered: u64,
    pub rejected: u64,
    pub acked: u64,
    pub connects: u64,
    pub connection_errors: u64,
    /// The hub refused our credentials or the consumer (exit 77).
    pub refused: Option<String>,
}

impl Stats for NatsStats {
    fn snapshot(&self) -> SourceStats {
        SourceStats {
            summary: self.to_string(),
            devices: vec![("hub".to_string(), self.connects > 0)],
            refused: self.refused.clone(),
            polls: self.messages,
            errors: self.rejected + self.connection_errors,
            reconnects: self.connects.saturating_sub(1),
            mismatches: 0,
            latency: None,
        }
    }
}

impl std::fmt::Display for NatsStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} messages, {} records", self.messages, self.records)?;
        if self.redelivered > 0 {
            write!(f, ", {} redelivered", self.redelivered)?;
        }
        if self.rejected > 0 {
            write!(f, ", {} rejected", self.rejected)?;
        }
        if self.acked > 0 {
            write!(f, ", {} acknowledged after commit", self.acked)?;
        }
        if self.connects > 1 || self.connection_errors > 0 {
            write!(f, ", {} connects, {} connection errors", self.connects, self.connection_errors)?;
        }
        Ok(())
    }
}

/// Shared counters.
pub type SharedStats = Arc<Mutex<NatsStats>>;

fn lock(s: &SharedStats) -> std::sync::MutexGuard<'_, NatsStats> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a message was not taken.
fn decode(
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
    interner: &mut Interner,
    source: &Arc<str>,
) -> Result<(Envelope, Vec<Record>), String> {
    let from_headers = match headers {
        Some(h) => Envelope::from_headers(|k| h.get(k).map(|v| v.as_str()))?,
        None => None,
    };
    let (env, body) = match from_headers {
        Some(env) => (env, payload),
        None => match Envelope::split(payload)? {
            Some((env, body)) => (env, body),
            None => return Err("no envelope (neither Eg-* headers nor an envelope line)".into()),
        },
    };
    // The subject is what the hub's permissions vouch for.
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.len() < 4 {
        return Err(format!("{subject} is not `<prefix>.<site>.<gateway>.<kind>`"));
    }
    let (site, gateway) = (tokens[tokens.len() - 3], tokens[tokens.len() - 2]);
    // What `identity` allows: the lake's folders and the channel names are made of them.
    let token = |t: &str| {
        !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !token(site) || !token(gateway) {
        return Err(format!("{subject}: site and gateway are letters, digits, `_` or `-`"));
    }
    if site != env.site || gateway != env.gateway {
        return Err(format!(
            "the envelope names {}/{} but the subject {subject} is {site}/{gateway}",
            env.site, env.gateway
        ));
    }
    let plain;
    let body = if env.zstd {
        plain = zstd::bulk::decompress(body, envelope::MAX_BODY)
            .map_err(|e| format!("the zstd body does not decompress: {e}"))?;
        &plain[..]
    } else {
        body
    };
    let now = now_micros();
    // The count is the sender's word: it sizes nothing before it is checked.
    let mut records = Vec::with_capacity((env.count as usize).min(CHUNK_RECORDS));
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut r = parse_ndjson_line(line, interner, now, source).map_err(|e| format!("line {}: {e}", i + 1))?;
        // Taken from the hub by this process: its own records, not a pipe's.
        match &mut r {
            Record::Reading(x) => x.from_input = false,
            Record::Anomaly(x) => x.from_input = false,
            Record::Alert(x) => x.from_input = false,
            Record::Delivery(_) | Record::Other { .. } => {}
        }
        records.push(r);
    }
    if records.len() as u64 != env.count {
        return Err(format!("the envelope counts {} records, the body holds {}", env.count, records.len()));
    }
    Ok((env, records))
}

/// What [`pull`] needs besides the plan.
pub struct PullContext {
    /// Where chunks of messages go (bounded: a slow store slows the pull).
    pub tx: mpsc::Sender<Vec<Delivered>>,
    pub stop: watch::Receiver<bool>,
    /// `--once`: read until the consumer has nothing pending, at most this long.
    pub once: Option<Duration>,
    pub stats: SharedStats,
}

/// The connection a pull ran on, kept so the acknowledgements still go out
/// after it returned.
pub type Client = Arc<Mutex<Option<async_nats::Client>>>;

/// Connects (and reconnects with backoff), makes sure the durable consumer
/// exists, and hands on every message in chunks until `stop` (or, with
/// `once`, until nothing is pending). `client` gets the connection.
pub async fn pull(id: Arc<str>, plan: NatsSourcePlan, login: Login, name: String, client: Client, cx: PullContext) {
    let PullContext { tx, mut stop, once, stats } = cx;
    let seed = now_micros() as u64 ^ u64::from(std::process::id());
    let errors: ServerErrors = Arc::new(Mutex::new(None));
    let deadline = once.map(|t| Instant::now() + t);
    let mut attempt = 0usize;
    let mut interner = Interner::with_cap(200_000);
    let mut reported = 0u64;
    let mut logged: Option<String> = None;
    loop {
        if *stop.borrow() || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let outcome = session(
            &id,
            &plan,
            &login,
            &name,
            seed,
            &errors,
            &client,
            &tx,
            &mut stop,
            deadline,
            &stats,
            &mut interner,
            &mut reported,
        )
        .await;
        let why = match outcome {
            Ok(()) => return,
            Err(e) => e,
        };
        {
            let mut s = lock(&stats);
            s.connection_errors += 1;
            if let Pulled::Refused(r) = &why {
                s.refused = Some(r.clone());
            }
        }
        if logged.as_deref() != Some(why.text()) {
            tracing::warn!(source = %id, "{}; retrying", why.text());
            logged = Some(why.text().to_string());
        }
        // --once: a hub that cannot be reached, or refuses us, is an answer.
        if once.is_some() && (lock(&stats).connects == 0 || matches!(why, Pulled::Refused(_))) {
            return;
        }
        let wait = reconnect_delay(attempt, seed);
        attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            _ = sleep_until(deadline) => return,
        }
    }
}

/// Why a session ended early.
enum Pulled {
    Refused(String),
    Failed(String),
}

impl Pulled {
    fn text(&self) -> &str {
        match self {
            Pulled::Refused(s) | Pulled::Failed(s) => s,
        }
    }
}

/// The durable consumer of the plan, created when missing.
async fn consumer(js: &async_nats::jetstream::Context, plan: &NatsSourcePlan) -> Result<PullConsumer, String> {
    let stream = js.get_stream(&plan.stream).await.map_err(|e| format!("stream {}: {e}", plan.stream))?;
    let mut config = pull::Config {
        durable_name: Some(plan.consumer.clone()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: plan.ack_wait,
        // Enough unacknowledged messages for a collector's file of a million rows.
        max_ack_pending: 20_000,
        ..Default::default()
    };
    // One filter as `filter_subject`: nats-server 2.9 knows no other.
    match plan.subjects.as_slice() {
        [] => {}
        [one] => config.filter_subject = one.clone(),
        many => config.filter_subjects = many.to_vec(),
    }
    stream
        .get_or_create_consumer(&plan.consumer, config)
        .await
        .map_err(|e| format!("consumer {} on stream {}: {e}", plan.consumer, plan.stream))
}

#[allow(clippy::too_many_arguments)]
async fn session(
    id: &Arc<str>,
    plan: &NatsSourcePlan,
    login: &Login,
    name: &str,
    seed: u64,
    errors: &ServerErrors,
    shared: &Client,
    tx: &mpsc::Sender<Vec<Delivered>>,
    stop: &mut watch::Receiver<bool>,
    deadline: Option<Instant>,
    stats: &SharedStats,
    interner: &mut Interner,
    reported: &mut u64,
) -> Result<(), Pulled> {
    let client = {
        let existing = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match existing {
            Some(c) => c,
            None => {
                let c = login.connect(name, Duration::from_secs(10), seed, errors).await.map_err(|e| match e {
                    ConnectFailure::Refused(w) => Pulled::Refused(w),
                    ConnectFailure::Unreachable(w) => Pulled::Failed(w),
                })?;
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                c
            }
        }
    };
    let js = async_nats::jetstream::new(client.clone());
    let fail = |e: String| match refusal(errors) {
        Some(r) => Pulled::Refused(r),
        None if crate::nats_client::is_refusal(&e) => Pulled::Refused(e),
        None => Pulled::Failed(e),
    };
    let mut consumer = consumer(&js, plan).await.map_err(fail)?;
    let once = deadline.is_some();
    if once {
        let info = consumer.info().await.map_err(|e| fail(format!("consumer {}: {e}", plan.consumer)))?;
        if info.num_pending == 0 {
            let mut s = lock(stats);
            s.connects += 1;
            return Ok(());
        }
    }
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(plan.batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| fail(format!("consumer {}: {e}", plan.consumer)))?;
    {
        // Connected and reading: an earlier refusal no longer holds.
        *errors.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut s = lock(stats);
        s.connects += 1;
        s.refused = None;
    }
    tracing::info!(source = %id, "reading consumer {} of stream {}", plan.consumer, plan.stream);
    let mut chunk: Vec<Delivered> = Vec::new();
    let mut chunk_records = 0usize;
    let mut first: Option<Instant> = None;
    let mut drained = false;
    let mut result = Ok(());
    loop {
        let flush_at = first.map(|t| t + CHUNK_WAIT);
        tokio::select! {
            biased;
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            _ = sleep_until(deadline) => break,
            _ = sleep_until(flush_at) => {}
            next = messages.next() => match next {
                None => { result = Err(Pulled::Failed("the consumer's message stream ended".into())); break }
                Some(Err(e)) => { result = Err(fail(format!("consumer {}: {e}", plan.consumer))); break }
                Some(Ok(m)) => {
                    let (pending, redelivered) = m.info().map(|i| (i.pending, i.delivered > 1)).unwrap_or((1, false));
                    let (msg, acker) = m.split();
                    let source: Arc<str> = id.clone();
                    match decode(msg.subject.as_str(), msg.headers.as_ref(), &msg.payload, interner, &source) {
                        Ok((envelope, records)) => {
                            {
                                let mut s = lock(stats);
                                s.messages += 1;
                                s.records += records.len() as u64;
                                s.redelivered += u64::from(redelivered);
                            }
                            chunk_records += records.len();
                            chunk.push(Delivered { envelope, records, acker });
                            first.get_or_insert_with(Instant::now);
                        }
                        Err(why) => {
                            {
                                let mut s = lock(stats);
                                s.messages += 1;
                                s.rejected += 1;
                            }
                            *reported += 1;
                            if *reported <= REPORTED {
                                tracing::warn!(source = %id, "message on {}: {why}; dropped", msg.subject);
                            } else if *reported == REPORTED + 1 {
                                tracing::warn!(source = %id, "more rejected messages; only counting them from here");
                            }
                            let _ = acker.ack_with(AckKind::Term).await;
                        }
                    }
                    if once && pending == 0 {
                        drained = true;
                    }
                }
            },
        }
        let due = first.is_some_and(|t| t.elapsed() >= CHUNK_WAIT);
        if !chunk.is_empty() && (due || chunk_records >= CHUNK_RECORDS || drained) {
            first = None;
            chunk_records = 0;
            if tx.send(std::mem::take(&mut chunk)).await.is_err() {
                return Ok(());
            }
        }
        if drained {
            return Ok(());
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(chunk).await;
    }
    result
}

/// Acknowledges messages off the engine's threads, in the order given.
pub fn acker(stats: SharedStats) -> (mpsc::UnboundedSender<Vec<Acker>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Acker>>();
    let task = tokio::spawn(async move {
        while let Some(list) = rx.recv().await {
            let mut done = 0u64;
            for a in &list {
                if a.ack().await.is_ok() {
                    done += 1;
                }
            }
            lock(&stats).acked += done;
        }
    });
    (tx, task)
}

/// A running `nats` source of the engine.
pub struct NatsSource {
    id: Arc<str>,
    plan: NatsSourcePlan,
    login: Login,
    name: String,
    stats: SharedStats,
}

impl NatsSource {
    /// Reads the source's secrets now: a missing credentials file stops the
    /// run before it starts.
    pub fn new(id: &str, pipeline: &str, plan: &NatsSourcePlan) -> Result<NatsSource, String> {
        Ok(NatsSource {
            id: Arc::from(id),
            plan: plan.clone(),
            login: Login::new(&plan.conn)?,
            name: format!("edgeguard {pipeline} {id}"),
            stats: Arc::new(Mutex::new(NatsStats::default())),
        })
    }

    async fn run_source(self, cx: SourceContext) {
        let SourceContext { tx, stop, once, mut finished } = cx;
        let client: Client = Arc::new(Mutex::new(None));
        let (chunk_tx, mut chunks) = mpsc::channel::<Vec<Delivered>>(4);
        let puller = tokio::spawn(pull(
            self.id.clone(),
            self.plan.clone(),
            self.login,
            self.name.clone(),
            client.clone(),
            PullContext { tx: chunk_tx, stop, once, stats: self.stats.clone() },
        ));
        let (ack_tx, ack_task) = acker(self.stats.clone());
        let mut renamer = Renamer::new(&self.plan.channel);
        let mut reported = 0u64;
        while let Some(chunk) = chunks.recv().await {
            let mut records = Vec::with_capacity(chunk.iter().map(|d| d.records.len()).sum());
            let mut ackers = Vec::with_capacity(chunk.len());
            for mut d in chunk {
                let failed = renamer.message(&d.envelope, &mut d.records).err();
                if let Some(why) = failed {
                    // A message is taken whole or not at all: this one never will be.
                    lock(&self.stats).rejected += 1;
                    reported += 1;
                    if reported <= REPORTED {
                        tracing::warn!(source = %self.id, "message {}: a channel name at the center: {why}; dropped", d.envelope.id());
                    }
                    let _ = d.acker.ack_with(AckKind::Term).await;
                    continue;
                }
                records.append(&mut d.records);
                ackers.push(d.acker);
            }
            let ack_tx = ack_tx.clone();
            let on_commit: CommitHook = Box::new(move || {
                let _ = ack_tx.send(ackers);
            });
            if tx.send(Batch { records, on_commit: Some(on_commit) }).await.is_err() {
                break;
            }
        }
        // Nobody reads chunks any more: a pull blocked on a full channel ends.
        drop(chunks);
        let _ = puller.await;
        drop(tx);
        // Keep the connection until the last commit, so its acks go out.
        let linger = async {
            while !*finished.borrow_and_update() {
                if finished.changed().await.is_err() {
                    break;
                }
            }
            drop(ack_tx);
            let _ = ack_task.await;
            let c = client.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(c) = c {
                let _ = c.flush().await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), linger).await;
    }
}

/// Channel names at the center, by the source's template: each gateway's
/// channel is rendered once and remembered, so a reading costs a lookup,
/// not an allocation.
struct Renamer {
    template: String,
    names: Interner,
    done: crate::model::intern::FxHashMap<GatewayChannel, Arc<str>>,
}

/// A gateway's channel: site, gateway, its own name.
type GatewayChannel = (Arc<str>, Arc<str>, Arc<str>);

/// Renamed channels remembered before the cache starts afresh.
const RENAMED: usize = 200_000;

impl Renamer {
    fn new(template: &str) -> Renamer {
        Renamer { template: template.to_string(), names: Interner::with_cap(RENAMED), done: Default::default() }
    }

    /// Renames the channels of one message's records; the reason when one
    /// cannot be named (the message is then not taken).
    fn message(&mut self, env: &Envelope, records: &mut [Record]) -> Result<(), String> {
        let site = self.names.name("site", &env.site).map_err(|e| e.0)?;
        let gateway = self.names.name("gateway", &env.gateway).map_err(|e| e.0)?;
        for r in records {
            let channel: Arc<str> = match r {
                Record::Reading(x) => x.channel.clone(),
                Record::Anomaly(x) => Arc::from(x.channel.as_str()),
                Record::Alert(x) => Arc::from(x.channel.as_str()),
                Record::Delivery(_) | Record::Other { .. } => continue,
            };
            let key = (site.clone(), gateway.clone(), channel);
            let named = match self.done.get(&key) {
                Some(n) => n.clone(),
                None => {
                    let text = NatsSourcePlan::render_channel(&self.template, &env.site, &env.gateway, &key.2)?;
                    let n = self.names.channel(&text).map_err(|e| e.0)?;
                    if self.done.len() >= RENAMED {
                        self.done.clear();
                    }
                    self.done.insert(key, n.clone());
                    n
                }
            };
            match r {
                Record::Reading(x) => x.channel = named,
                Record::Anomaly(x) => x.channel = named.to_string(),
                Record::Alert(x) => x.channel = named.to_string(),
                Record::Delivery(_) | Record::Other { .. } => {}
            }
        }
        Ok(())
    }
}

impl Source for NatsSource {
    fn stats(&self) -> StatsHandle {
        StatsHandle::of(self.stats.clone())
    }
    fn run(self: Box<Self>, cx: SourceContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.run_source(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Reading;

    fn body(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            Reading::sample("line.temp", i as i64, Some(i as f64)).write_ndjson(&mut out);
        }
        out
    }

    fn env(count: u64, zstd: bool) -> Envelope {
        Envelope {
            site: "berlin".into(),
            gateway: "gw-1".into(),
            epoch: "0011223344556677".into(),
            commit: 9,
            part: 0,
            offset: 0,
            count,
            schema: 5,
            backlog: false,
            zstd,
        }
    }

    fn headers(e: &Envelope) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        for (k, v) in e.headers() {
            h.insert(k, v.as_str());
        }
        h
    }

    #[test]
    fn messages_decode_from_headers_and_from_an_envelope_line() {
        let src: Arc<str> = Arc::from("fleet");
        let mut names = Interner::with_cap(100);
        let e = env(3, false);
        let (back, recs) = decode("eg.berlin.gw-1.reading", Some(&headers(&e)), &body(3), &mut names, &src).unwrap();
        assert_eq!(back, e);
        assert_eq!(recs.len(), 3);
        assert!(matches!(&recs[0], Record::Reading(r) if !r.from_input && &*r.channel == "line.temp"));
        // zstd body
        let z = env(3, true);
        let packed = zstd::bulk::compress(&body(3), 3).unwrap();
        assert_eq!(decode("eg.berlin.gw-1.reading", Some(&headers(&z)), &packed, &mut names, &src).unwrap().1.len(), 3);
        // MQTT form: no headers, the envelope is the first line.
        let mut payload = e.line().into_bytes();
        payload.extend_from_slice(&body(3));
        assert_eq!(decode("eg.berlin.gw-1.reading", None, &payload, &mut names, &src).unwrap().0, e);
    }

    #[test]
    fn a_message_that_does_not_add_up_is_refused() {
        let src: Arc<str> = Arc::from("fleet");
        let mut names = Interner::with_cap(100);
        let e = env(3, false);
        // Another gateway's subject.
        let err = decode("eg.berlin.gw-2.reading", Some(&headers(&e)), &body(3), &mut names, &src).unwrap_err();
        assert!(err.contains("subject"), "{err}");
        // Wrong count.
        assert!(decode("eg.berlin.gw-1.reading", Some(&headers(&e)), &body(2), &mut names, &src).is_err());
        // No envelope at all.
        assert!(decode("eg.berlin.gw-1.reading", None, &body(3), &mut names, &src).unwrap_err().contains("envelope"));
        // A count no message could hold is refused, not allocated.
        let huge = Envelope { count: u64::MAX, ..env(3, false) };
        assert!(decode("eg.berlin.gw-1.reading", Some(&headers(&huge)), &body(3), &mut names, &src).is_err());
        // A subject that is not `<prefix>.<site>.<gateway>.<kind>`.
        assert!(decode("gw-1.reading", Some(&headers(&e)), &body(3), &mut names, &src).is_err());
        // Not zstd although it says so.
        let z = env(3, true);
        assert!(decode("eg.berlin.gw-1.reading", Some(&headers(&z)), &body(3), &mut names, &src).is_err());
    }

    #[test]
    fn channels_are_renamed_by_the_template() {
        let mut renamer = Renamer::new(NatsSourcePlan::DEFAULT_CHANNEL);
        let mut recs = vec![Reading::sample("line.temp", 0, Some(1.0)), Reading::sample("line.temp", 1, Some(2.0))];
        renamer.message(&env(2, false), &mut recs).unwrap();
        assert!(recs.iter().all(|r| r.channel() == Some("berlin.gw-1.line.temp")));
        // One name, rendered once: both readings share it.
        match (&recs[0], &recs[1]) {
            (Record::Reading(a), Record::Reading(b)) => assert!(Arc::ptr_eq(&a.channel, &b.channel)),
            _ => unreachable!(),
        }
        // A name too long once prefixed refuses the message.
        let mut long = vec![Reading::sample(&"x".repeat(195), 0, Some(1.0))];
        assert!(renamer.message(&env(1, false), &mut long).is_err());
    }
}
