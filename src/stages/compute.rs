//! Computed channels (`compute`): new channels derived from others, made in
//! the stream after fusion (so they can read fused channels) and before
//! detection (so detectors and alert rules see them). The engine's chain
//! runs each computed reading through the channel rules and offers it back
//! here, so computed channels can read computed channels.
//!
//! **When**, per kind, on the time of the readings (deterministic on the
//! virtual clock; on the wall clock the chain's ticks close what is due):
//!
//! * `expr` — a *round* starts with an input's reading and is evaluated at
//!   its time when every input has reported at that time or a reading of a
//!   later time arrives (or at the end, or when the wall clock passes it).
//!   With `every`, instead at every multiple of `every` that a reading or
//!   the wall clock has passed, from the latest values at or before it.
//!   An input not heard from within `max_age` counts as `bad`.
//! * `rate` — at each reading of the counter after the first: the step
//!   over the time between them, per `per`. A decrease is a wrap-around
//!   when the counter has a width and the wrapped step is under a quarter
//!   of its range; else a reset: `bad`, no value, flag `reset`.
//! * `integrate` — at each reading: the running sum of trapezoids, per
//!   `per`. A gap longer than `max_gap` adds nothing, and that reading's
//!   sum is `suspect` with flag `gap`.
//! * `delta` — at the end of every interval of `every` (multiples of it)
//!   that had a step: the sum of the steps between readings, each counted in
//!   the interval of its later reading (counter steps as for `rate`; after a
//!   reset, the new value counts from 0 and the delta is `suspect` with flag
//!   `reset`; intervals skipped with no reading make the next one `gap`).
//! * `rolling` — at each reading: `min`, `max`, `avg` or `stddev` of the
//!   readings in the last `window` (at most [`MAX_WINDOW`] of them).
//!
//! **Quality.** A value made from a `bad` input (or one too old) is `bad`,
//! with no value and flag `bad_input`; from a `suspect` one, `suspect` with
//! flag `suspect_input`. Either way the reading names its `inputs` and, in
//! `voted_out`, the ones that were not good. A result that is not finite (a
//! division by zero) is `bad` with flag `invalid`. Source: `compute`.
//!
//! **Pipes.** Computed readings that come in with `--input` are dropped and
//! made again here from their inputs, as fusion does.
//!
//! **State** (last values, rounds, sums, windows, counters) is saved with
//! the other stage state (`crate::engine::state`).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compile::{ComputeKind, ComputePlan};
use crate::model::expr::Expr;
use crate::model::intern::{FxBuild, FxHashMap};
use crate::model::record::{Flags, Fusion, Quality, Reading, Record};
use crate::model::time::Micros;
use crate::spec::{CounterWidth, RollingStat};

/// Most readings a `rolling` window holds; older ones leave it early.
pub const MAX_WINDOW: usize = 100_000;
/// Most interval ends one reading may close at once (after a long gap the
/// rest are skipped).
const MAX_CATCH_UP: i64 = 10_000;

/// The latest reading of an input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Latest {
    ts: Micros,
    value: Option<f64>,
    /// 0 good, 1 suspect, 2 bad.
    q: u8,
}

impl Latest {
    fn of(r: &Reading) -> Latest {
        let value = r.value.filter(|v| v.is_finite());
        let q = match (r.quality, value) {
            (Quality::Bad, _) | (_, None) => 2,
            (Quality::Suspect, _) => 1,
            (Quality::Good, _) => 0,
        };
        Latest { ts: r.ts, value, q }
    }
}

/// What a computed channel keeps between readings (and runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum State {
    Expr {
        latest: Vec<Option<Latest>>,
        round: Option<Micros>,
        #[serde(skip)]
        in_round: Vec<bool>,
        /// The next interval end to evaluate at (`every`).
        next: Option<Micros>,
    },
    Rate {
        last: Option<(Micros, f64)>,
    },
    Integrate {
        sum: f64,
        last: Option<(Micros, f64)>,
    },
    Delta {
        last: Option<(Micros, f64)>,
        next: Option<Micros>,
        acc: f64,
        steps: u32,
        q: u8,
        flags: u32,
    },
    Rolling {
        window: VecDeque<(Micros, f64)>,
    },
}

struct Computed {
    plan: ComputePlan,
    channel: Arc<str>,
    unit: Option<Arc<str>>,
    inputs: Vec<Arc<str>>,
    expr: Option<Expr>,
    state: State,
}

/// The stage over every computed channel of a plan.
pub struct Computer {
    computed: Vec<Computed>,
    /// Input channel → (computed channel, input) for every use of it.
    by_input: FxHashMap<Arc<str>, Vec<(usize, usize)>>,
    outputs: std::collections::HashSet<Arc<str>, FxBuild>,
    source: Arc<str>,
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX).max(1)
}

/// The first multiple of `every` at or after `ts`.
fn ceil_to(ts: Micros, every: i64) -> Micros {
    ts.div_euclid(every) * every + if ts.rem_euclid(every) == 0 { 0 } else { every }
}

/// The step of a counter from `from` to `to`: `Ok` with the step (wrapped
/// around where that is plausible), `Err` for a reset.
pub fn counter_step(from: f64, to: f64, width: Option<CounterWidth>) -> Result<f64, ()> {
    if to >= from {
        return Ok(to - from);
    }
    if let Some(w) = width {
        let m = w.modulus();
        let wrapped = m - from + to;
        if from < m && wrapped < m / 4.0 {
            return Ok(wrapped);
        }
    }
    Err(())
}

/// The area of one trapezoid from `(t0, x0)` to `(t1, x1)` (µs), per `per` µs.
pub fn trapezoid(t0: Micros, x0: f64, t1: Micros, x1: f64, per: i64) -> f64 {
    (x0 + x1) / 2.0 * ((t1 - t0) as f64 / per as f64)
}

impl Computer {
    pub fn new(plans: &[ComputePlan]) -> Result<Computer, String> {
        let mut by_input: FxHashMap<Arc<str>, Vec<(usize, usize)>> = FxHashMap::default();
        let mut computed = Vec::with_capacity(plans.len());
        for (c, p) in plans.iter().enumerate() {
            let inputs: Vec<Arc<str>> = p.inputs.iter().map(|i| Arc::from(i.as_str())).collect();
            for (i, name) in inputs.iter().enumerate() {
                by_input.entry(name.clone()).or_default().push((c, i));
            }
            let expr = match &p.kind {
                ComputeKind::Expr { expr, .. } => {
                    Some(Expr::parse(expr).map_err(|e| format!("compute.{}: expression: {}", p.channel, e.message))?)
                }
                ComputeKind::Rate { .. }
                | ComputeKind::Integrate { .. }
                | ComputeKind::Delta { .. }
                | ComputeKind::Rolling { .. } => None,
            };
            computed.push(Computed {
                channel: Arc::from(p.channel.as_str()),
                unit: p.unit.as_deref().map(Arc::from),
                state: fresh_state(p),
                inputs,
                expr,
                plan: p.clone(),
            });
        }
        let outputs = computed.iter().map(|c| c.channel.clone()).collect();
        Ok(Computer { computed, by_input, outputs, source: Arc::from("compute") })
    }

    pub fn is_empty(&self) -> bool {
        self.computed.is_empty()
    }

    /// The number of computed channels.
    pub fn len(&self) -> usize {
        self.computed.len()
    }

    /// A computed reading that came in through a pipe: it is made again here.
    pub fn is_upstream_copy(&self, r: &Reading) -> bool {
        r.from_input && self.outputs.contains(&r.channel)
    }

    /// Passes `batch` on into `out`, but for upstream copies; what the
    /// batch's readings compute goes to `fresh` (the engine's chain does
    /// this reading by reading, with the channel rules in between).
    #[cfg(test)]
    pub fn process(&mut self, batch: Vec<Record>, out: &mut Vec<Record>, fresh: &mut Vec<Record>) {
        for rec in batch {
            if let Record::Reading(r) = &rec {
                if self.is_upstream_copy(r) {
                    continue;
                }
                self.observe(r, fresh);
            }
            out.push(rec);
        }
    }

    /// Takes reading `r` as an input of whatever reads its channel.
    pub fn observe(&mut self, r: &Reading, fresh: &mut Vec<Record>) {
        let Some(uses) = self.by_input.get(&r.channel) else { return };
        let latest = Latest::of(r);
        for &(c, i) in uses {
            let comp = &mut self.computed[c];
            comp.take(i, latest, &self.source, fresh);
        }
    }

    /// The wall clock is at `now`: evaluate the rounds and intervals it has passed.
    pub fn tick(&mut self, now: Micros, fresh: &mut Vec<Record>) {
        for comp in &mut self.computed {
            comp.due(now, &self.source, fresh, false);
        }
    }

    /// The end of the input: evaluate the open rounds.
    pub fn flush(&mut self, fresh: &mut Vec<Record>) {
        for comp in &mut self.computed {
            comp.due(Micros::MAX, &self.source, fresh, true);
        }
    }

    /// The state of every computed channel, as JSON:
    /// `{channel: {"plan": <its plan>, "state": {"kind": …}}}`.
    pub fn save_state(&self) -> String {
        let doc: serde_json::Map<String, serde_json::Value> = self
            .computed
            .iter()
            .map(|c| {
                let v = serde_json::json!({"plan": c.plan, "state": c.state});
                (c.channel.to_string(), v)
            })
            .collect();
        serde_json::Value::Object(doc).to_string()
    }

    /// Continues from [`Computer::save_state`]. A computed channel whose
    /// plan changed since starts afresh.
    pub fn restore_state(&mut self, json: &str) {
        let Ok(serde_json::Value::Object(doc)) = serde_json::from_str::<serde_json::Value>(json) else {
            tracing::warn!("saved compute state does not parse; starting afresh");
            return;
        };
        for c in &mut self.computed {
            let Some(saved) = doc.get(&*c.channel) else { continue };
            if saved["plan"] != serde_json::json!(c.plan) {
                continue;
            }
            if let Ok(mut s) = serde_json::from_value::<State>(saved["state"].clone()) {
                if let State::Expr { latest, in_round, .. } = &mut s {
                    if latest.len() != c.inputs.len() {
                        continue;
                    }
                    *in_round = vec![false; latest.len()];
                }
                c.state = s;
            }
        }
    }
}

fn fresh_state(p: &ComputePlan) -> State {
    match &p.kind {
        ComputeKind::Expr { .. } => State::Expr {
            latest: vec![None; p.inputs.len()],
            round: None,
            in_round: vec![false; p.inputs.len()],
            next: None,
        },
        ComputeKind::Rate { .. } => State::Rate { last: None },
        ComputeKind::Integrate { .. } => State::Integrate { sum: 0.0, last: None },
        ComputeKind::Delta { .. } => State::Delta { last: None, next: None, acc: 0.0, steps: 0, q: 0, flags: 0 },
        ComputeKind::Rolling { .. } => State::Rolling { window: VecDeque::new() },
    }
}

impl Computed {
    /// Input `i` reported `r`.
    fn take(&mut self, i: usize, r: Latest, source: &Arc<str>, fresh: &mut Vec<Record>) {
        match (&self.plan.kind, &mut self.state) {
            (ComputeKind::Expr { every: None, .. }, State::Expr { round, .. }) => {
                if round.is_some_and(|t| r.ts > t) {
                    self.close_round(source, fresh);
                }
                let State::Expr { latest, round, in_round, .. } = &mut self.state else { return };
                if latest[i].is_none_or(|l| r.ts >= l.ts) {
                    latest[i] = Some(r);
                }
                in_round[i] = true;
                *round = Some(round.map_or(r.ts, |t| t.max(r.ts)));
                if in_round.iter().all(|f| *f) {
                    self.close_round(source, fresh);
                }
            }
            (ComputeKind::Expr { every: Some(every), .. }, State::Expr { next, .. }) => {
                let every = micros(*every);
                if next.is_none() {
                    *next = Some(ceil_to(r.ts, every));
                }
                self.due(r.ts - 1, source, fresh, false);
                let State::Expr { latest, .. } = &mut self.state else { return };
                if latest[i].is_none_or(|l| r.ts >= l.ts) {
                    latest[i] = Some(r);
                }
            }
            (ComputeKind::Rate { counter, per }, State::Rate { last }) => {
                let (counter, per) = (*counter, micros(*per));
                let Some(v) = r.value.filter(|_| r.q < 2) else {
                    let culprit = self.inputs[0].clone();
                    self.emit(r.ts, None, Quality::Bad, Flags::BAD_INPUT, vec![culprit], source, fresh);
                    return;
                };
                let prev = last.replace((r.ts, v));
                match prev {
                    None => {}
                    Some((t0, _)) if r.ts <= t0 => *last = prev,
                    Some((t0, v0)) => match counter_step(v0, v, counter) {
                        Ok(step) => {
                            let rate = step / ((r.ts - t0) as f64 / per as f64);
                            self.emit_from(r, Some(rate), Flags::empty(), source, fresh);
                        }
                        Err(()) => self.emit(r.ts, None, Quality::Bad, Flags::RESET, Vec::new(), source, fresh),
                    },
                }
            }
            (ComputeKind::Integrate { per, max_gap }, State::Integrate { sum, last }) => {
                let (per, max_gap) = (micros(*per), micros(*max_gap));
                let Some(x) = r.value.filter(|_| r.q < 2) else {
                    let culprit = self.inputs[0].clone();
                    self.emit(r.ts, None, Quality::Bad, Flags::BAD_INPUT, vec![culprit], source, fresh);
                    return;
                };
                let mut flags = Flags::empty();
                match *last {
                    Some((t0, _)) if r.ts <= t0 => return,
                    Some((t0, x0)) if r.ts - t0 <= max_gap => *sum += trapezoid(t0, x0, r.ts, x, per),
                    Some(_) => flags = Flags::GAP,
                    None => {}
                }
                *last = Some((r.ts, x));
                let value = *sum;
                self.emit_from(r, Some(value), flags, source, fresh);
            }
            (ComputeKind::Delta { every, counter }, State::Delta { next, .. }) => {
                let (every, counter) = (micros(*every), *counter);
                if next.is_none() {
                    *next = Some(ceil_to(r.ts, every));
                }
                self.due(r.ts - 1, source, fresh, false);
                let State::Delta { last, acc, steps, q, flags, .. } = &mut self.state else { return };
                let Some(v) = r.value.filter(|_| r.q < 2) else {
                    *q = 2;
                    *flags |= Flags::BAD_INPUT.0;
                    return;
                };
                *q = (*q).max(r.q);
                let prev = last.replace((r.ts, v));
                match prev {
                    None => {}
                    Some((t0, _)) if r.ts <= t0 => *last = prev,
                    Some((_, v0)) => {
                        *steps += 1;
                        match counter_step(v0, v, counter) {
                            Ok(step) => *acc += step,
                            Err(()) => {
                                *acc += v;
                                *q = (*q).max(1);
                                *flags |= Flags::RESET.0;
                            }
                        }
                    }
                }
            }
            (ComputeKind::Rolling { window: span, stat }, State::Rolling { window }) => {
                let (span, stat) = (micros(*span), *stat);
                let Some(v) = r.value.filter(|_| r.q < 2) else {
                    let culprit = self.inputs[0].clone();
                    self.emit(r.ts, None, Quality::Bad, Flags::BAD_INPUT, vec![culprit], source, fresh);
                    return;
                };
                if window.back().is_some_and(|(t, _)| r.ts < *t) {
                    return;
                }
                window.push_back((r.ts, v));
                while window.front().is_some_and(|(t, _)| *t <= r.ts - span) || window.len() > MAX_WINDOW {
                    window.pop_front();
                }
                let value = rolling(window, stat);
                self.emit_from(r, Some(value), Flags::empty(), source, fresh);
            }
            (ComputeKind::Expr { .. }, _)
            | (ComputeKind::Rate { .. }, _)
            | (ComputeKind::Integrate { .. }, _)
            | (ComputeKind::Delta { .. }, _)
            | (ComputeKind::Rolling { .. }, _) => self.state = fresh_state(&self.plan),
        }
    }

    /// Evaluates what is due up to `now`: interval ends before or at `now`,
    /// and an open round when `end` (or the wall clock is past it).
    fn due(&mut self, now: Micros, source: &Arc<str>, fresh: &mut Vec<Record>, end: bool) {
        match (&self.plan.kind, &mut self.state) {
            (ComputeKind::Expr { every: None, .. }, State::Expr { round, .. }) => {
                if round.is_some_and(|t| end || t < now) {
                    self.close_round(source, fresh);
                }
            }
            (ComputeKind::Expr { every: Some(every), .. }, State::Expr { next, .. }) => {
                let every = micros(*every);
                let Some(mut b) = *next else { return };
                if end {
                    return;
                }
                if (now - b) / every > MAX_CATCH_UP {
                    b = now.div_euclid(every) * every - MAX_CATCH_UP * every;
                }
                while b <= now {
                    self.evaluate(b, source, fresh);
                    b += every;
                }
                if let State::Expr { next, .. } = &mut self.state {
                    *next = Some(b);
                }
            }
            (ComputeKind::Delta { every, .. }, State::Delta { next, acc, steps, q, flags, .. }) => {
                let every = micros(*every);
                let Some(b) = *next else { return };
                if end || b > now {
                    return;
                }
                let (value, quality, flag) = (*acc, *q, Flags(*flags));
                let had_steps = *steps > 0;
                *acc = 0.0;
                *steps = 0;
                *q = 0;
                *flags = 0;
                // The next interval end after `now`; skipped ones had no reading.
                let after = now.div_euclid(every) * every + every;
                let skipped = after - b > every;
                *next = Some(after);
                if skipped {
                    *flags = Flags::GAP.0;
                    *q = 1;
                }
                if had_steps {
                    let quality = match quality {
                        0 => Quality::Good,
                        1 => Quality::Suspect,
                        _ => Quality::Bad,
                    };
                    let value = (quality != Quality::Bad).then_some(value);
                    let mut f = flag;
                    if quality == Quality::Suspect && f.is_empty() {
                        f.insert(Flags::SUSPECT_INPUT);
                    }
                    let culprits = if f.contains(Flags::BAD_INPUT) || f.contains(Flags::SUSPECT_INPUT) {
                        vec![self.inputs[0].clone()]
                    } else {
                        Vec::new()
                    };
                    self.emit(b, value, quality, f, culprits, source, fresh);
                }
            }
            (ComputeKind::Expr { .. }, _)
            | (ComputeKind::Rate { .. }, _)
            | (ComputeKind::Integrate { .. }, _)
            | (ComputeKind::Delta { .. }, _)
            | (ComputeKind::Rolling { .. }, _) => {}
        }
    }

    /// Evaluates the open round of an expression at its time.
    fn close_round(&mut self, source: &Arc<str>, fresh: &mut Vec<Record>) {
        let State::Expr { round, in_round, .. } = &mut self.state else { return };
        let Some(t) = round.take() else { return };
        in_round.iter_mut().for_each(|f| *f = false);
        self.evaluate(t, source, fresh);
    }

    /// An expression at time `t`, from the latest values at or before it.
    fn evaluate(&mut self, t: Micros, source: &Arc<str>, fresh: &mut Vec<Record>) {
        let (ComputeKind::Expr { max_age, .. }, State::Expr { latest, .. }) = (&self.plan.kind, &self.state) else {
            return;
        };
        let max_age = micros(*max_age);
        let mut values = Vec::with_capacity(latest.len());
        let mut bad = Vec::new();
        let mut suspect = Vec::new();
        for (i, l) in latest.iter().enumerate() {
            match l {
                Some(l) if l.q < 2 && t - l.ts <= max_age => {
                    values.push(l.value.unwrap_or(f64::NAN));
                    if l.q == 1 {
                        suspect.push(self.inputs[i].clone());
                    }
                }
                Some(_) | None => {
                    values.push(f64::NAN);
                    bad.push(self.inputs[i].clone());
                }
            }
        }
        if !bad.is_empty() {
            return self.emit(t, None, Quality::Bad, Flags::BAD_INPUT, bad, source, fresh);
        }
        let v = self.expr.as_ref().map_or(f64::NAN, |e| e.eval(&values));
        if !v.is_finite() {
            return self.emit(t, None, Quality::Bad, Flags::INVALID, Vec::new(), source, fresh);
        }
        if suspect.is_empty() {
            self.emit(t, Some(v), Quality::Good, Flags::empty(), Vec::new(), source, fresh)
        } else {
            self.emit(t, Some(v), Quality::Suspect, Flags::SUSPECT_INPUT, suspect, source, fresh)
        }
    }

    /// A value made from single-input reading `r`, with its quality.
    fn emit_from(&self, r: Latest, value: Option<f64>, flags: Flags, source: &Arc<str>, fresh: &mut Vec<Record>) {
        let value = value.filter(|v| v.is_finite());
        match (value, r.q, flags.is_empty()) {
            (None, _, _) => self.emit(r.ts, None, Quality::Bad, Flags::INVALID, Vec::new(), source, fresh),
            (Some(v), 0, true) => self.emit(r.ts, Some(v), Quality::Good, flags, Vec::new(), source, fresh),
            (Some(v), 0, false) => self.emit(r.ts, Some(v), Quality::Suspect, flags, Vec::new(), source, fresh),
            (Some(v), _, _) => {
                let mut f = flags;
                f.insert(Flags::SUSPECT_INPUT);
                self.emit(r.ts, Some(v), Quality::Suspect, f, vec![self.inputs[0].clone()], source, fresh)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        ts: Micros,
        value: Option<f64>,
        quality: Quality,
        flags: Flags,
        culprits: Vec<Arc<str>>,
        source: &Arc<str>,
        fresh: &mut Vec<Record>,
    ) {
        let fusion = (!culprits.is_empty())
            .then(|| Box::new(Fusion { inputs: self.inputs.clone(), voted_out: culprits, spread: 0.0 }));
        fresh.push(Record::Reading(Reading {
            ts,
            channel: self.channel.clone(),
            value,
            text: None,
            unit: self.unit.clone(),
            quality,
            flags,
            source: source.clone(),
            from_input: false,
            fusion,
        }));
    }
}

/// `stat` over the values of `window` (not empty).
fn rolling(window: &VecDeque<(Micros, f64)>, stat: RollingStat) -> f64 {
    let values = window.iter().map(|(_, v)| *v);
    match stat {
        RollingStat::Min => values.fold(f64::INFINITY, f64::min),
        RollingStat::Max => values.fold(f64::NEG_INFINITY, f64::max),
        RollingStat::Avg => values.sum::<f64>() / window.len() as f64,
        RollingStat::Stddev => {
            let n = window.len() as f64;
            if window.len() < 2 {
                return 0.0;
            }
            let mean = values.clone().sum::<f64>() / n;
            (values.map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn plan(channel: &str, inputs: &[&str], kind: ComputeKind) -> ComputePlan {
        ComputePlan {
            channel: channel.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            kind,
            unit: None,
        }
    }

    fn run(c: &mut Computer, recs: Vec<Record>) -> Vec<Reading> {
        let mut out = Vec::new();
        let mut fresh = Vec::new();
        c.process(recs, &mut out, &mut fresh);
        c.flush(&mut fresh);
        fresh
            .into_iter()
            .map(|r| match r {
                Record::Reading(r) => r,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn at(ch: &str, s: i64, v: Option<f64>) -> Record {
        Reading::sample(ch, s, v)
    }

    #[test]
    fn counter_wraps_or_resets() {
        assert_eq!(counter_step(10.0, 15.0, None), Ok(5.0));
        assert_eq!(counter_step(65_530.0, 4.0, Some(CounterWidth::U16)), Ok(10.0));
        assert_eq!(counter_step(40_000.0, 0.0, Some(CounterWidth::U16)), Err(()));
        assert_eq!(counter_step(65_530.0, 4.0, None), Err(()));
        assert_eq!(counter_step(4_294_967_290.0, 5.0, Some(CounterWidth::U32)), Ok(11.0));
    }

    #[test]
    fn trapezoid_of_kw_is_kwh() {
        // 2 kW to 4 kW over half an hour: 1.5 kWh.
        assert_eq!(trapezoid(0, 2.0, 1_800_000_000, 4.0, 3_600_000_000), 1.5);
    }

    #[test]
    fn expr_rounds_close_when_all_inputs_report_and_propagate_quality() {
        let p = plan(
            "pump.eff",
            &["pump.power", "pump.flow"],
            ComputeKind::Expr { expr: "pump.power / pump.flow".into(), max_age: Duration::from_secs(5), every: None },
        );
        let mut c = Computer::new(&[p]).unwrap();
        let mut bad_flow = at("pump.flow", 2, None);
        if let Record::Reading(r) = &mut bad_flow {
            r.flags = Flags::TIMEOUT;
        }
        let out = run(
            &mut c,
            vec![
                at("pump.power", 1, Some(10.0)),
                at("pump.flow", 1, Some(4.0)),
                at("pump.power", 2, Some(12.0)),
                bad_flow,
                at("pump.power", 20, Some(12.0)),
            ],
        );
        let got: Vec<(i64, Option<f64>, Quality)> =
            out.iter().map(|r| (r.ts / 1_000_000, r.value, r.quality)).collect();
        assert_eq!(got, [(1, Some(2.5), Quality::Good), (2, None, Quality::Bad), (20, None, Quality::Bad)]);
        assert!(out[1].flags.contains(Flags::BAD_INPUT));
        assert_eq!(out[1].fusion.as_ref().unwrap().voted_out, [Arc::from("pump.flow")]);
    }

    #[test]
    fn rate_handles_wrap_and_flags_reset() {
        let p = plan(
            "m.rate",
            &["m.count"],
            ComputeKind::Rate { counter: Some(CounterWidth::U16), per: Duration::from_secs(1) },
        );
        let mut c = Computer::new(&[p]).unwrap();
        let out = run(
            &mut c,
            vec![
                at("m.count", 0, Some(65_530.0)),
                at("m.count", 2, Some(4.0)),
                at("m.count", 4, Some(24.0)),
                at("m.count", 6, Some(2.0)),
            ],
        );
        let got: Vec<(Option<f64>, Quality)> = out.iter().map(|r| (r.value, r.quality)).collect();
        assert_eq!(got, [(Some(5.0), Quality::Good), (Some(10.0), Quality::Good), (None, Quality::Bad)]);
        assert!(out[2].flags.contains(Flags::RESET));
    }

    #[test]
    fn integrate_does_not_bridge_gaps_and_state_carries_over() {
        let p = plan(
            "e",
            &["p"],
            ComputeKind::Integrate { per: Duration::from_secs(3600), max_gap: Duration::from_secs(60) },
        );
        let mut c = Computer::new(std::slice::from_ref(&p)).unwrap();
        let out = run(&mut c, vec![at("p", 0, Some(3600.0)), at("p", 10, Some(3600.0)), at("p", 1000, Some(3600.0))]);
        let got: Vec<(Option<f64>, Quality)> = out.iter().map(|r| (r.value, r.quality)).collect();
        assert_eq!(got, [(Some(0.0), Quality::Good), (Some(10.0), Quality::Good), (Some(10.0), Quality::Suspect)]);
        assert!(out[2].flags.contains(Flags::GAP));
        let mut again = Computer::new(&[p]).unwrap();
        again.restore_state(&c.save_state());
        let out = run(&mut again, vec![at("p", 1001, Some(3600.0))]);
        assert_eq!(out[0].value, Some(11.0));
    }

    #[test]
    fn delta_per_interval_and_rolling_stats() {
        let d = plan("d", &["c"], ComputeKind::Delta { every: Duration::from_secs(10), counter: None });
        let r = plan("r", &["x"], ComputeKind::Rolling { window: Duration::from_secs(3), stat: RollingStat::Max });
        let mut c = Computer::new(&[d, r]).unwrap();
        let out = run(
            &mut c,
            vec![
                at("c", 1, Some(100.0)),
                at("c", 5, Some(103.0)),
                at("c", 10, Some(104.0)),
                at("c", 15, Some(110.0)),
                at("c", 21, Some(111.0)),
                at("x", 1, Some(5.0)),
                at("x", 2, Some(1.0)),
                at("x", 4, Some(2.0)),
            ],
        );
        let got: Vec<(&str, i64, Option<f64>)> = out.iter().map(|r| (&*r.channel, r.ts / 1_000_000, r.value)).collect();
        assert_eq!(
            got,
            [("d", 10, Some(4.0)), ("d", 20, Some(6.0)), ("r", 1, Some(5.0)), ("r", 2, Some(5.0)), ("r", 4, Some(2.0))]
        );
    }

    proptest! {
        /// A u16 counter read often enough (steps under a quarter of the
        /// range) gives back every step, wrap-arounds included.
        #[test]
        fn wrapped_steps_are_recovered(start in 0u32..65_536, steps in proptest::collection::vec(0u32..16_000, 1..50)) {
            let mut v = start;
            for s in steps {
                let next = (v + s) % 65_536;
                prop_assert_eq!(counter_step(f64::from(v), f64::from(next), Some(CounterWidth::U16)), Ok(f64::from(s)));
                v = next;
            }
        }

        /// The integral of a constant is the constant times the time.
        #[test]
        fn trapezoid_of_a_constant(x in -1e6f64..1e6, dt in 1i64..1_000_000_000) {
            let a = trapezoid(0, x, dt, x, 1_000_000);
            prop_assert!((a - x * dt as f64 / 1e6).abs() <= 1e-9 * (1.0 + a.abs()));
        }
    }
}
