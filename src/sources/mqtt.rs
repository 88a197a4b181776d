//! The `mqtt` source: subscriptions on a broker, at-least-once into the store.
//!
//! Messages become readings (a bare number, a JSON value at a pointer, or
//! several values of one JSON message), gathered into batches of up to
//! [`BATCH`] readings or [`BATCH_WAIT`]. With QoS ≥ 1 acknowledgements are
//! manual: a batch carries the messages it came from, and they are
//! acknowledged only when the store has committed the batch (or, without a
//! store, when it was written out). A crash before that makes the broker
//! deliver them again: duplicates are possible, losses are not, as long as
//! the session is persistent (`clean_session: false`, the default with QoS ≥
//! 1) and the broker keeps it.
//!
//! One task reads the event loop; a second sends the acknowledgements (they
//! wait for room in rumqttc's request queue, which only the first empties).
//! Acks carry the connection they belong to: after a reconnect the broker
//! sends unacknowledged messages again, and a stale packet id must not
//! acknowledge a newer message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::payload::{json_number, json_time, text_number};
use super::sleep_until;
use crate::compile::MqttPlan;
use crate::model::batch::Batch;
use crate::model::intern::Interner;
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::model::time::{self, Micros};
use crate::sources::{Source, SourceContext, SourceStats, Stats, StatsHandle};
use std::future::Future;
use std::pin::Pin;

/// Readings per batch handed to the engine.
pub const BATCH: usize = 2048;
/// Longest a reading waits for its batch to fill.
pub const BATCH_WAIT: Duration = Duration::from_millis(20);
/// Rejected messages logged one by one before only counting.
const REPORTED: u64 = 20;
/// MQTT's own limit on a packet; larger payloads than `max_payload` are read
/// whole (once) and rejected, so one does not make the connection fail and
/// come back forever.
const PACKET_LIMIT: usize = 256 << 20;

/// Counters of one MQTT source.
#[derive(Debug, Default, Clone)]
pub struct MqttStats {
    pub messages: u64,
    pub readings: u64,
    pub rejected: u64,
    pub oversized: u64,
    pub acked: u64,
    pub connects: u64,
    pub connection_errors: u64,
    /// Per topic filter: did a message produce a reading.
    pub filters: Vec<(String, bool)>,
    /// The broker refused our credentials.
    pub refused: Option<String>,
}

impl Stats for MqttStats {
    fn snapshot(&self) -> SourceStats {
        SourceStats {
            summary: self.to_string(),
            devices: std::iter::once(("broker".to_string(), self.connects > 0))
                .chain(self.filters.iter().map(|(f, ok)| (format!("topic {f}"), *ok)))
                .collect(),
            refused: self.refused.clone(),
            polls: self.messages,
            errors: self.rejected + self.connection_errors,
            reconnects: self.connects.saturating_sub(1),
            mismatches: 0,
            latency: None,
        }
    }
}

impl Source for Subscriber {
    fn stats(&self) -> StatsHandle {
        StatsHandle::of(self.stats.clone())
    }
    fn run(self: Box<Self>, cx: SourceContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.subscribe(cx.once, cx.tx, cx.stop, cx.finished))
    }
}

impl std::fmt::Display for MqttStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} messages, {} readings", self.messages, self.readings)?;
        if self.rejected > 0 {
            write!(f, ", {} rejected ({} oversized)", self.rejected, self.oversized)?;
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

/// A channel name template over topic levels. `plant.{{ topic[1] }}.temp`
/// is split once into literal text and level numbers; anything richer goes
/// through minijinja.
enum ChannelTemplate {
    Fast(Vec<Part>),
    Jinja(minijinja::Environment<'static>),
}

enum Part {
    Lit(String),
    Level(usize),
}

impl ChannelTemplate {
    fn new(src: &str) -> Result<ChannelTemplate, String> {
        if let Some(parts) = fast_parts(src) {
            return Ok(ChannelTemplate::Fast(parts));
        }
        let mut env = crate::model::template::environment();
        env.add_template_owned("channel", src.to_string()).map_err(|e| e.to_string())?;
        Ok(ChannelTemplate::Jinja(env))
    }

    fn render(&self, levels: &[&str], out: &mut String) -> Result<(), String> {
        out.clear();
        match self {
            ChannelTemplate::Fast(parts) => {
                for p in parts {
                    match p {
                        Part::Lit(s) => out.push_str(s),
                        Part::Level(i) => out.push_str(levels.get(*i).ok_or("the topic has fewer levels")?),
                    }
                }
                Ok(())
            }
            ChannelTemplate::Jinja(env) => {
                let t = env.get_template("channel").map_err(|e| e.to_string())?;
                *out = t.render(minijinja::context! { topic => levels }).map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    }
}

fn fast_parts(src: &str) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_string()));
        }
        let close = rest[open..].find("}}")? + open;
        let inner = rest[open + 2..close].trim();
        let n = inner.strip_prefix("topic[")?.strip_suffix(']')?.trim().parse().ok()?;
        parts.push(Part::Level(n));
        rest = &rest[close + 2..];
    }
    if rest.contains("{%") || rest.contains("{#") || rest.contains("}}") {
        return None;
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Some(parts)
}

struct Topic {
    filter: String,
    levels: Vec<String>,
    qos: QoS,
    /// JSON pointer ("" for a bare number) → channel template.
    values: Vec<(String, ChannelTemplate)>,
    timestamp: Option<String>,
    unit: Option<Arc<str>>,
}

fn matches(filter: &[String], topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter {
        match (f.as_str(), levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(l)) if f == l => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A running MQTT source.
pub struct Subscriber {
    id: Arc<str>,
    plan: MqttPlan,
    options: MqttOptions,
    topics: Vec<Topic>,
    stats: Arc<Mutex<MqttStats>>,
}

impl Subscriber {
    pub fn new(id: &str, plan: &MqttPlan) -> Result<Subscriber, String> {
        let stats = Arc::new(Mutex::new(MqttStats::default()));
        let mut topics = Vec::new();
        for t in &plan.topics {
            let mut values = Vec::new();
            for (ptr, tmpl) in &t.values {
                values.push((ptr.clone(), ChannelTemplate::new(tmpl)?));
            }
            topics.push(Topic {
                filter: t.filter.clone(),
                levels: t.filter.split('/').map(String::from).collect(),
                qos: qos(t.qos),
                values,
                timestamp: t.timestamp.clone(),
                unit: t.unit.as_deref().map(Arc::from),
            });
        }
        stats.lock().unwrap_or_else(|e| e.into_inner()).filters =
            plan.topics.iter().map(|t| (t.filter.clone(), false)).collect();
        let options = options(plan)?;
        Ok(Subscriber { id: Arc::from(id), plan: plan.clone(), options, topics, stats })
    }
}

/// Connection settings; reads the secrets and TLS files, so a missing one
/// stops the run before it starts.
fn options(plan: &MqttPlan) -> Result<MqttOptions, String> {
    let (mut o, _) = crate::mqtt_client::options(
        &plan.url,
        plan.client_id.clone(),
        plan.username.as_ref(),
        plan.password.as_ref(),
        plan.tls.as_ref(),
        plan.keepalive,
    )?;
    o.set_clean_session(plan.clean_session);
    o.set_manual_acks(true);
    o.set_max_packet_size(PACKET_LIMIT, 1 << 20);
    // Acks queue here until the event loop sends them.
    o.set_request_channel_capacity(65_536);
    Ok(o)
}

impl Subscriber {
    /// Runs until `stop` (or, with `once`, until every filter produced a
    /// reading or `timeout` passed). After handing over its last batch it
    /// keeps the connection until `finished` (the engine's last commit) so
    /// the acknowledgements still go out, then disconnects.
    async fn subscribe(
        self,
        once: Option<Duration>,
        tx: mpsc::Sender<Batch>,
        mut stop: watch::Receiver<bool>,
        mut finished: watch::Receiver<bool>,
    ) {
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 1024);
        // Acks wait for commits; the generation is the connection they belong to.
        let generation = Arc::new(AtomicU64::new(0));
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(u64, Vec<Publish>)>();
        let acker = {
            let (client, generation, stats) = (client.clone(), generation.clone(), self.stats.clone());
            tokio::spawn(async move {
                while let Some((gen, list)) = ack_rx.recv().await {
                    if gen != generation.load(Ordering::SeqCst) {
                        continue; // the broker sends these again on the new connection
                    }
                    let n = list.len() as u64;
                    for p in &list {
                        if client.ack(p).await.is_err() {
                            return;
                        }
                    }
                    stats.lock().unwrap_or_else(|e| e.into_inner()).acked += n;
                }
            })
        };

        let max_payload = self.plan.max_payload;
        let mut interner = Interner::with_cap(100_000);
        let mut name = String::new();
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
        let mut acks: Vec<Publish> = Vec::new();
        let mut first_pending: Option<Instant> = None;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10), time::now_micros() as u64);
        let mut produced = vec![false; self.topics.len()];
        let deadline = once.map(|t| Instant::now() + t);
        let mut reported = 0u64;
        let mut down_logged = false;
        let mut done = false;

        let mut pause: Option<Duration> = None;
        while !done {
            if let Some(wait) = pause.take() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => done = true,
                }
            }
            let flush_at = first_pending.map(|t| t + BATCH_WAIT);
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => done = true,
                _ = sleep_until(deadline) => done = true,
                _ = sleep_until(flush_at) => {}
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        generation.fetch_add(1, Ordering::SeqCst);
                        backoff.succeed();
                        if down_logged {
                            tracing::info!(source = %self.id, "connected to {} again", self.plan.url);
                            down_logged = false;
                        }
                        self.stats.lock().unwrap_or_else(|e| e.into_inner()).connects += 1;
                        // A broker that kept the session keeps the subscriptions too;
                        // subscribing again is harmless and covers one that lost it.
                        // (Queued behind pending acks, so from a task of its own.)
                        let _ = ack;
                        let filters: Vec<rumqttc::SubscribeFilter> =
                            self.topics.iter().map(|t| rumqttc::SubscribeFilter::new(t.filter.clone(), t.qos)).collect();
                        let (client, id) = (client.clone(), self.id.clone());
                        tokio::spawn(async move {
                            if let Err(e) = client.subscribe_many(filters).await {
                                tracing::warn!(source = %id, "cannot subscribe: {e}");
                            }
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        if s.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                            tracing::warn!(source = %self.id, "the broker refused a subscription");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let before = batch.len();
                        let now = time::now_micros();
                        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                        stats.messages += 1;
                        let outcome = if p.payload.len() > max_payload {
                            stats.oversized += 1;
                            Err(format!("payload of {} bytes is over max_payload ({max_payload})", p.payload.len()))
                        } else {
                            self.readings(&p, now, &mut interner, &mut name, &mut batch, &mut produced)
                        };
                        if let Err(why) = outcome {
                            batch.truncate(before);
                            stats.rejected += 1;
                            reported += 1;
                            if reported <= REPORTED {
                                tracing::warn!(source = %self.id, "message on {}: {why}", p.topic);
                            } else if reported == REPORTED + 1 {
                                tracing::warn!(source = %self.id, "more rejected messages; only counting them from here");
                            }
                        }
                        stats.readings += (batch.len() - before) as u64;
                        drop(stats);
                        // Rejected messages are acknowledged with their batch too:
                        // a broker must not send them again forever.
                        if p.qos != QoS::AtMostOnce {
                            acks.push(p);
                        }
                        if first_pending.is_none() {
                            first_pending = Some(Instant::now());
                        }
                        if once.is_some() && produced.iter().all(|&b| b) {
                            done = true;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                        stats.connection_errors += 1;
                        if let ConnectionError::ConnectionRefused(code) = &e {
                            if matches!(code, ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized) {
                                stats.refused = Some(format!("{code:?}"));
                            }
                        }
                        drop(stats);
                        if !down_logged {
                            tracing::warn!(source = %self.id, "{}: {e}; reconnecting with backoff", self.plan.url);
                            down_logged = true;
                        }
                        if once.is_some() && self.stats.lock().unwrap_or_else(|e| e.into_inner()).connects == 0 {
                            // --once: a broker that cannot be reached is an answer.
                            done = true;
                        } else {
                            pause = Some(backoff.fail());
                        }
                    }
                },
            }
            let full = batch.len() >= BATCH || acks.len() >= BATCH;
            let due = first_pending.is_some_and(|t| t.elapsed() >= BATCH_WAIT);
            if (full || due || done) && (!batch.is_empty() || !acks.is_empty()) {
                let gen = generation.load(Ordering::SeqCst);
                let list = std::mem::take(&mut acks);
                let on_commit: Option<crate::model::batch::CommitHook> = if list.is_empty() {
                    None
                } else {
                    let ack_tx = ack_tx.clone();
                    Some(Box::new(move || {
                        let _ = ack_tx.send((gen, list));
                    }))
                };
                let records = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                first_pending = None;
                if tx.send(Batch { records, on_commit }).await.is_err() {
                    break;
                }
            }
        }
        {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            for (i, f) in produced.iter().enumerate() {
                if let Some(s) = stats.filters.get_mut(i) {
                    s.1 |= *f;
                }
            }
        }
        // Hand-over done: let the engine finish, keep the link for the acks.
        drop(tx);
        drop(ack_tx);
        let linger = async {
            while !*finished.borrow_and_update() {
                tokio::select! {
                    changed = finished.changed() => if changed.is_err() { break },
                    ev = eventloop.poll() => if ev.is_err() { tokio::time::sleep(Duration::from_millis(100)).await },
                }
            }
            // Send what the acker queued, then say goodbye.
            let _ = acker.await;
            let _ = client.try_disconnect();
            while eventloop.poll().await.is_ok() {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), linger).await;
    }

    /// The readings of one message, appended to `out`.
    fn readings(
        &self,
        p: &Publish,
        now: Micros,
        interner: &mut Interner,
        name: &mut String,
        out: &mut Vec<Record>,
        produced: &mut [bool],
    ) -> Result<(), String> {
        let Some(ti) = self.topics.iter().position(|t| matches(&t.levels, &p.topic)) else {
            return Err("no subscription of this source matches the topic".into());
        };
        let t = &self.topics[ti];
        let levels: Vec<&str> = p.topic.split('/').collect();
        let needs_json = t.values.iter().any(|(ptr, _)| !ptr.is_empty()) || t.timestamp.is_some();
        let json: Option<serde_json::Value> = if needs_json {
            Some(serde_json::from_slice(&p.payload).map_err(|e| format!("payload is not JSON: {e}"))?)
        } else {
            None
        };
        let ts = match (&t.timestamp, &json) {
            (Some(ptr), Some(j)) => match j.pointer(ptr) {
                Some(v) => json_time(v).ok_or_else(|| format!("`{ptr}` is not a time"))?,
                None => return Err(format!("no `{ptr}` in the payload")),
            },
            _ => now,
        };
        for (ptr, tmpl) in &t.values {
            let value = if ptr.is_empty() {
                text_number(&p.payload).ok_or("payload is not a number")?
            } else {
                let j = json.as_ref().expect("parsed above");
                let v = j.pointer(ptr).ok_or_else(|| format!("no `{ptr}` in the payload"))?;
                json_number(v).ok_or_else(|| format!("`{ptr}` is not a number"))?
            };
            tmpl.render(&levels, name).map_err(|e| format!("channel template: {e}"))?;
            let channel = interner.channel(name).map_err(|e| e.0)?;
            out.push(Record::Reading(Reading {
                ts,
                channel,
                value: Some(value),
                text: None,
                unit: t.unit.clone(),
                quality: Quality::Good,
                flags: Flags::empty(),
                source: self.id.clone(),
                from_input: false,
                fusion: None,
            }));
        }
        produced[ti] = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_topics() {
        let f = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        assert!(matches(&f("plant/+/temp"), "plant/boiler/temp"));
        assert!(!matches(&f("plant/+/temp"), "plant/boiler/pres"));
        assert!(!matches(&f("plant/+/temp"), "plant/boiler/temp/x"));
        assert!(matches(&f("plant/#"), "plant/a/b/c"));
        assert!(matches(&f("#"), "x"));
        assert!(!matches(&f("a/b"), "a"));
    }

    #[test]
    fn channel_templates_take_topic_levels() {
        let mut out = String::new();
        let levels = ["plant", "boiler", "temp"];
        ChannelTemplate::new("plant.{{ topic[1] }}.{{topic[2]}}").unwrap().render(&levels, &mut out).unwrap();
        assert_eq!(out, "plant.boiler.temp");
        assert!(matches!(ChannelTemplate::new("x.{{ topic[1] }}").unwrap(), ChannelTemplate::Fast(_)));
        let upper = ChannelTemplate::new("x.{{ topic[1] | upper }}").unwrap();
        assert!(matches!(upper, ChannelTemplate::Jinja(_)));
        upper.render(&levels, &mut out).unwrap();
        assert_eq!(out, "x.BOILER");
        assert!(ChannelTemplate::new("x.{{ topic[7] }}").unwrap().render(&levels, &mut out).is_err());
    }
}
