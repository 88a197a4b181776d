//! `edgeguard test`: one pipeline test, run on a virtual clock through the
//! engine's own stage chain, with everything it produced captured.
//!
//! ```text
//!  series / fixture / simulators ─▶ Chain::step (validate → fuse → detect → alert) ─▶ Captured
//!        one batch per instant          a Tick every virtual second without readings      records, alert timeline,
//!                                       End when the input is over                        rendered notifications
//! ```
//!
//! A test is driven the way a live run drives the chain (`engine::drive`):
//! the readings of one instant are one batch, and the seconds in between
//! are the engine's once-a-second tick, stamped with virtual time, so stale
//! channels, `for` timers, `repeat` intervals and fusion rounds behave as in
//! a real run, only without waiting. Nothing touches a store, a socket or a
//! thread; notifiers render their messages (exactly as `alert --render`
//! does) and send nothing. [`check`] compares what was captured with the
//! expectations; [`report`] writes the results.

pub mod check;
pub mod report;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::compile::pipetest::{Sample, TestInput, TestPlan};
use crate::compile::{Plan, SourceKind};
use crate::engine::{Chain, Stage, Step, VIRTUAL_EPOCH};
use crate::model::intern::Interner;
use crate::model::ndjson::parse_ndjson_line;
use crate::model::record::{Flags, Notification, Quality, Reading, Record, Transition};
use crate::model::time::Micros;
use crate::sinks::notify::{Message, Notifiers};
use crate::sources::simulate::Simulator;
use crate::stages::alert::{Hold, Phase, Silence};

/// The engine's tick on the wall clock, here on the virtual one.
const TICK_US: i64 = 1_000_000;

/// What happened to an alert rule on a channel, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: Micros,
    pub rule: String,
    pub channel: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The condition started to hold; nothing is sent before `for`.
    Pending { hold: Duration },
    /// It stopped holding before `for`: nothing was sent.
    Cleared { after: Duration, hold: Duration },
    /// It held for `for`; told again every `repeat` while it fires.
    Firing { repeat: Option<Duration> },
    /// Still firing, `repeat` after the last notification.
    Repeat,
    /// The hold on its notification is over: notifying now.
    Released,
    /// A firing alert's condition stopped holding.
    Resolved,
    /// A notification was rendered for this notifier.
    Sent { notifier: String, state: Transition, title: String },
    /// A due notification is held back, and why.
    Held { why: Hold },
}

/// One notification as a notifier would send it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub ts: Micros,
    pub rule: String,
    pub channel: String,
    pub state: Transition,
    pub notifier: String,
    pub title: String,
    pub body: String,
    /// What the notifier sends: a file's line, a webhook's body, an MQTT
    /// payload, stdout's record, exec's arguments joined by spaces.
    pub message: String,
    /// Template errors met (each replaced by its fallback text).
    pub errors: Vec<String>,
}

/// Everything one test run produced.
#[derive(Debug, Default)]
pub struct Captured {
    /// Time 0 of the test.
    pub origin: Micros,
    /// Where the virtual clock stopped.
    pub end: Micros,
    /// Readings (with fused ones and stale gaps), anomalies and alerts, in the order the chain made them.
    pub records: Vec<Record>,
    pub events: Vec<Event>,
    pub sent: Vec<Sent>,
}

/// Why a test could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Its fixture could not be read (66 when missing).
    #[error("cannot read {0}: {1}")]
    Input(String, #[source] std::io::Error),
    /// A fixture line is not a record.
    #[error("{0}")]
    Fixture(String),
    /// The chain could not be built.
    #[error("{0}")]
    Setup(String),
}

/// Runs `test` against `plan` (the spec with the test's overrides applied).
pub fn run(plan: &Plan, test: &TestPlan) -> Result<Captured, RunError> {
    let mut d = Driver::new(plan)?;
    let extra = |origin: Micros, input_end: Micros| -> Micros {
        test.duration.map_or(input_end, |t| origin + t.as_micros() as i64)
    };
    match &test.input {
        TestInput::Series { interval, channels } => {
            let origin = VIRTUAL_EPOCH;
            d.start(origin, &test.silences);
            let step = interval.as_micros() as i64;
            let len = channels.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
            let names: Vec<Arc<str>> = channels.iter().map(|(c, _)| Arc::from(c.as_str())).collect();
            let source: Arc<str> = Arc::from("test");
            let mut stopped = vec![false; channels.len()];
            let end = extra(origin, origin + len as i64 * step);
            for k in 0..len {
                let ts = origin + k as i64 * step;
                if ts > end {
                    break;
                }
                let mut batch = Vec::with_capacity(channels.len());
                for (i, (_, samples)) in channels.iter().enumerate() {
                    let (value, quality, flags) = match samples.get(k) {
                        _ if stopped[i] => continue,
                        None | Some(Sample::Missing) => continue,
                        Some(Sample::Stop) => {
                            stopped[i] = true;
                            continue;
                        }
                        Some(Sample::Value(v)) => (Some(*v), Quality::Good, Flags::empty()),
                        Some(Sample::Bad) => (None, Quality::Bad, Flags::empty()),
                        Some(Sample::Timeout) => (None, Quality::Bad, Flags::TIMEOUT),
                    };
                    batch.push(Record::Reading(Reading {
                        ts,
                        channel: names[i].clone(),
                        value,
                        text: None,
                        unit: None,
                        quality,
                        flags,
                        source: source.clone(),
                        from_input: false,
                        fusion: None,
                    }));
                }
                d.records(ts, batch);
            }
            d.finish(end);
        }
        TestInput::File(path) => {
            let shown = path.display().to_string();
            let file = std::fs::File::open(path).map_err(|e| RunError::Input(shown.clone(), e))?;
            let records = read_fixture(std::io::BufReader::new(file), &shown)?;
            d.replay(records, &test.silences, test.duration);
        }
        TestInput::Simulate(length) => {
            let mut sims: Vec<Simulator> = plan
                .sources
                .iter()
                .filter_map(|s| match &s.kind {
                    SourceKind::Simulate(sim) => Some(Simulator::new(&s.id, sim, VIRTUAL_EPOCH)),
                    SourceKind::Modbus(_) | SourceKind::Mqtt(_) | SourceKind::Serial(_) | SourceKind::Nats(_) => None,
                })
                .collect();
            let origin = sims.iter().map(Simulator::next_ts).min().unwrap_or(VIRTUAL_EPOCH);
            d.start(origin, &test.silences);
            let stop = origin + length.as_micros() as i64;
            while let Some(ts) = sims.iter().map(Simulator::next_ts).min() {
                if ts >= stop {
                    break;
                }
                let mut batch = Vec::new();
                for s in sims.iter_mut().filter(|s| s.next_ts() == ts) {
                    s.tick(&mut batch);
                }
                d.records(ts, batch);
            }
            d.finish(extra(origin, stop));
        }
    }
    Ok(d.captured)
}

/// Runs the records of a fixture through `plan` with fresh state, from the
/// first record's time to the last's: `alert --explain`.
pub fn run_records(plan: &Plan, records: Vec<Record>) -> Result<Captured, RunError> {
    let mut d = Driver::new(plan)?;
    d.replay(records, &[], None);
    Ok(d.captured)
}

fn record_ts(r: &Record) -> Micros {
    match r {
        Record::Reading(r) => r.ts,
        Record::Anomaly(a) => a.ts,
        Record::Alert(a) => a.ts,
        Record::Delivery(d) => d.alert.ts,
        Record::Other { .. } => 0,
    }
}

/// The records of an NDJSON fixture, read from `reader` (named `shown` in
/// messages); readings are the device's side, judged by the chain.
pub fn read_fixture(reader: impl std::io::BufRead, shown: &str) -> Result<Vec<Record>, RunError> {
    let mut interner = Interner::with_cap(100_000);
    let source: Arc<str> = Arc::from("fixture");
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| RunError::Input(shown.to_string(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let r = parse_ndjson_line(line.as_bytes(), &mut interner, VIRTUAL_EPOCH, &source)
            .map_err(|e| RunError::Fixture(format!("{shown}:{}: {}", i + 1, e.0)))?;
        // A fixture is the device's side: its records are judged here.
        let r = match r {
            Record::Reading(mut r) => {
                r.from_input = false;
                Record::Reading(r)
            }
            other => other,
        };
        out.push(r);
    }
    Ok(out)
}

/// A test's silence: rule, channel glob, until (from the start).
type TestSilence = (String, Option<String>, Duration);

/// The chain, the capture and the alert states seen after the last step.
struct Driver {
    chain: Chain,
    notifiers: Notifiers,
    /// Rule → (`for`, `repeat`).
    hold: HashMap<String, (Duration, Option<Duration>)>,
    captured: Captured,
    next_tick: Micros,
    /// (rule, channel) → (phase, since, why held), after the last step.
    states: HashMap<(String, String), (Phase, Micros, Option<Hold>)>,
    out: Vec<Record>,
    notes: Vec<Notification>,
}

impl Driver {
    fn new(plan: &Plan) -> Result<Driver, RunError> {
        let chain = Chain::new(plan, Stage::Alert, false, false).map_err(|e| RunError::Setup(e.to_string()))?;
        Ok(Driver {
            chain,
            notifiers: Notifiers::new(&plan.notifiers),
            hold: plan.alerts.iter().map(|a| (a.rule.clone(), (a.duration, a.repeat))).collect(),
            captured: Captured::default(),
            next_tick: 0,
            states: HashMap::new(),
            out: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// The records of a fixture, one batch per timestamp, with the test's
    /// silences and duration.
    fn replay(&mut self, records: Vec<Record>, silences: &[TestSilence], duration: Option<Duration>) {
        let origin = records.first().map_or(VIRTUAL_EPOCH, record_ts);
        self.start(origin, silences);
        let last = records.last().map_or(origin, record_ts);
        let mut batch = Vec::new();
        let mut at = origin;
        for r in records {
            let ts = record_ts(&r);
            if ts != at && !batch.is_empty() {
                self.records(at, std::mem::take(&mut batch));
            }
            at = ts;
            batch.push(r);
        }
        if !batch.is_empty() {
            self.records(at, batch);
        }
        self.finish(duration.map_or(last, |t| origin + t.as_micros() as i64));
    }

    fn start(&mut self, origin: Micros, silences: &[TestSilence]) {
        self.captured.origin = origin;
        self.next_tick = origin + TICK_US;
        for (rule, channel, until) in silences {
            let until = origin + until.as_micros() as i64;
            self.chain.alerter.silence(Silence {
                rule: rule.clone(),
                channel: channel.clone(),
                until,
                comment: None,
                created: origin,
            });
        }
    }

    /// The readings of instant `ts`, after the ticks of the quiet seconds before it.
    fn records(&mut self, ts: Micros, batch: Vec<Record>) {
        self.ticks_before(ts);
        if self.next_tick == ts {
            self.next_tick += TICK_US;
        }
        self.step(Step::Records(batch), ts);
    }

    fn ticks_before(&mut self, ts: Micros) {
        while self.next_tick < ts {
            let t = self.next_tick;
            self.step(Step::Tick(t), t);
            self.next_tick += TICK_US;
        }
    }

    /// Ticks on to `end`, then ends the input (fusion closes its rounds).
    fn finish(&mut self, end: Micros) {
        self.ticks_before(end + 1);
        self.step(Step::End, end);
        self.captured.end = end;
    }

    fn step(&mut self, step: Step, ts: Micros) {
        self.out.clear();
        self.notes.clear();
        self.chain.step(step, &mut self.out, &mut self.notes);
        let notes = std::mem::take(&mut self.notes);
        if !self.chain.alerter.is_empty() {
            self.timeline(ts, &notes);
        }
        for n in &notes {
            self.capture(n);
        }
        self.notes = notes;
        self.captured.records.append(&mut self.out);
    }

    /// Compares the rules' states with the last step's: the transitions of this one.
    fn timeline(&mut self, ts: Micros, notes: &[Notification]) {
        if self.states.is_empty() && self.chain.alerter.states().next().is_none() && notes.is_empty() {
            return;
        }
        let alerter = &self.chain.alerter;
        let now: HashMap<(String, String), (Phase, Micros, Option<Hold>)> = alerter
            .states()
            .map(|s| {
                let why = if s.held { alerter.held_by(&s.rule, &s.channel) } else { None };
                ((s.rule.clone(), s.channel.clone()), (s.phase, s.since, why))
            })
            .collect();
        let mut events = Vec::new();
        let hold = |rule: &str| self.hold.get(rule).copied().unwrap_or_default();
        let push = |events: &mut Vec<Event>, ts: Micros, key: &(String, String), kind: EventKind| {
            events.push(Event { ts, rule: key.0.clone(), channel: key.1.clone(), kind });
        };
        for (key, (phase, since, why)) in &now {
            let (phase, since) = (*phase, *since);
            let (was, was_why) = self.states.get(key).map_or((Phase::Inactive, None), |b| (b.0, b.2.as_ref()));
            let was_held = was_why.is_some();
            if was == Phase::Inactive && phase != Phase::Inactive {
                push(&mut events, since, key, EventKind::Pending { hold: hold(&key.0).0 });
            }
            if phase == Phase::Firing && was != Phase::Firing {
                push(&mut events, ts, key, EventKind::Firing { repeat: hold(&key.0).1 });
            } else if phase == Phase::Firing {
                let told = notes
                    .iter()
                    .any(|n| n.alert.rule == key.0 && n.alert.channel == key.1 && n.alert.state == Transition::Firing);
                if told {
                    push(&mut events, ts, key, if was_held { EventKind::Released } else { EventKind::Repeat });
                }
            }
            // Held, or held for another reason than before (a mute window
            // ends as an inhibition starts).
            if let Some(why) = why.as_ref().filter(|w| Some(*w) != was_why) {
                push(&mut events, ts, key, EventKind::Held { why: why.clone() });
            }
        }
        for (key, &(phase, since, _)) in &self.states {
            if now.get(key).is_some_and(|n| n.0 != Phase::Inactive) {
                continue;
            }
            let kind = match phase {
                Phase::Pending => EventKind::Cleared {
                    after: Duration::from_micros((ts - since).max(0) as u64),
                    hold: hold(&key.0).0,
                },
                Phase::Firing => EventKind::Resolved,
                Phase::Inactive => continue,
            };
            push(&mut events, ts, key, kind);
        }
        // Pending and firing in one step (`for: 0s`) keep their order.
        events.sort_by(|a, b| (a.ts, &a.rule, &a.channel).cmp(&(b.ts, &b.rule, &b.channel)));
        self.captured.events.extend(events);
        self.states = now;
    }

    /// Renders `n` for each of its notifiers, as `alert --render` does.
    fn capture(&mut self, n: &Notification) {
        for id in n.notify.iter() {
            let Some((msg, mut errors)) = self.notifiers.render(id, n) else { continue };
            errors.extend(n.errors.iter().cloned());
            let a = &n.alert;
            self.captured.events.push(Event {
                ts: a.ts,
                rule: a.rule.clone(),
                channel: a.channel.clone(),
                kind: EventKind::Sent { notifier: id.clone(), state: a.state, title: a.title.clone() },
            });
            self.captured.sent.push(Sent {
                ts: a.ts,
                rule: a.rule.clone(),
                channel: a.channel.clone(),
                state: a.state,
                notifier: id.clone(),
                title: a.title.clone(),
                body: a.body.clone(),
                message: message_text(msg),
                errors,
            });
        }
    }
}

/// What a notifier's message carries, as text.
fn message_text(m: Message) -> String {
    match m {
        Message::Stdout { record } => record,
        Message::File { line, .. } => line,
        Message::Exec { argv } => argv.join(" "),
        Message::Webhook { body, .. } => body,
        Message::Mqtt { payload, .. } => payload,
        Message::Email { from, to, subject, body, .. } => {
            format!("From: {from}\nTo: {}\nSubject: {subject}\n\n{body}", to.join(", "))
        }
    }
}

/// A time of the test as people write it: `0s`, `12m`, `1m30s`, `20m0.5s`.
pub fn offset(origin: Micros, ts: Micros) -> String {
    let us = ts - origin;
    let (sign, us) = if us < 0 { ("-", -us) } else { ("", us) };
    let (h, rest) = (us / 3_600_000_000, us % 3_600_000_000);
    let (m, rest) = (rest / 60_000_000, rest % 60_000_000);
    let mut s = String::from(sign);
    if h > 0 {
        s += &format!("{h}h");
    }
    if m > 0 {
        s += &format!("{m}m");
    }
    if rest > 0 || s.len() == sign.len() {
        if rest % 1_000_000 == 0 {
            s += &format!("{}s", rest / 1_000_000);
        } else {
            let secs = format!("{:.6}", rest as f64 / 1e6);
            s += secs.trim_end_matches('0');
            s += "s";
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::offset;

    #[test]
    fn offsets_read_like_durations() {
        assert_eq!(offset(0, 0), "0s");
        assert_eq!(offset(0, 720_000_000), "12m");
        assert_eq!(offset(0, 90_000_000), "1m30s");
        assert_eq!(offset(0, 1_200_500_000), "20m0.5s");
        assert_eq!(offset(0, 3_723_000_000), "1h2m3s");
        assert_eq!(offset(10, 0), "-0.00001s");
    }
}
