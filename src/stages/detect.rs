//! Streaming anomaly detectors: one definition covers every channel its glob
//! matches, each channel with its own state, bounded by the window.
//!
//! Every record passes through; an anomaly record is added after the reading
//! that triggered it. It says why: the `score`, what was `expected` (a mean,
//! a median, a limit), the `threshold`, and a sentence in `detail`.
//!
//! | method | state per channel | anomaly when |
//! |---|---|---|
//! | `zscore` | the readings of the last `window` (running sums) | \|x − mean\| / σ > threshold (3) |
//! | `ewma` | smoothed mean and variance (`alpha`, 0.1) | \|x − mean\| / σ > threshold (3) |
//! | `mad` | the readings of the last `window`, sorted | \|x − median\| / (1.4826·MAD) > threshold (3.5); 1.2533 × the mean absolute deviation when the MAD is 0 |
//! | `rate` | the previous reading | \|Δx/Δt\| > max_rate |
//! | `flatline` | when the value last moved | no move beyond `tolerance` (0) for `for` (once per flat stretch) |
//! | `iforest` | the feature window, the training vectors (at most 512), the forest built from them (~0.25 MB at 100 trees) | isolation score > threshold (0.75) |
//! | `pattern` | the step reached and when step 1 matched (one state per detector, across its channels) | every `steps` expression matched, in order, within `within` |
//!
//! Windowed methods and `ewma` stay silent until they have [`MIN_SAMPLES`]
//! readings (and, with `warmup`, until that long after the first one). Only
//! readings with a value that are not `bad` are looked at.
//!
//! `iforest` scores each reading's feature vector — the value, its distance
//! from the mean of the last `window`, and the step from the previous
//! reading — with an isolation forest ([`super::iforest`]). It trains on the
//! first [`FOREST_TRAINING`] vectors, or on everything in `warmup`
//! (reservoir-sampled), and is silent until then; a run with a store trains
//! it from the channel's stored history first. Its saved state is the
//! training vectors: the forest is rebuilt identically from them and `seed`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobMatcher};

use crate::compile::DetectPlan;
use crate::model::intern::FxHashMap;
use crate::model::record::{Anomaly, Quality, Reading, Record};
use crate::model::rng::Rng;
use crate::model::time::Micros;
use crate::spec::DetectMethod;

use super::iforest::{Forest, DIMS};

/// Readings a statistical detector needs before it judges.
pub const MIN_SAMPLES: usize = 10;
/// Most readings one channel's window may hold, whatever the window says.
pub const MAX_WINDOW: usize = 100_000;
/// Channels one detector follows at most (each has state).
pub const MAX_CHANNELS: usize = 100_000;
/// Feature vectors an `iforest` trains on (without `warmup`: the first ones).
pub const FOREST_TRAINING: usize = 2 * super::iforest::SUBSAMPLE;
/// The window of windowed detectors without one.
const DEFAULT_WINDOW: Duration = DetectPlan::DEFAULT_WINDOW;
/// Fewest vectors a forest is built from when `warmup` ends.
const FOREST_MIN_TRAINING: usize = 32;
/// Anomaly lines remembered to recognise upstream copies in a pipe.
const RECENT: usize = 64;

/// The detectors `tracks` follow on `channel` look at one value.
fn observe_tracks(
    detectors: &[Detector],
    stats: &mut DetectStats,
    tracks: &mut [(usize, Track)],
    ts: Micros,
    channel: &Arc<str>,
    v: f64,
    found: &mut Vec<Anomaly>,
) {
    for (i, track) in tracks.iter_mut() {
        let d = &detectors[*i];
        if let Some(f) = d.observe(&mut track.state, track.first_ts, ts, v) {
            stats.anomalies += 1;
            let day = ts.div_euclid(86_400_000_000);
            *stats.by_day.entry((d.id.clone(), channel.clone(), day)).or_default() += 1;
            found.push(anomaly(d, ts, channel, Some(v), &f));
        }
    }
}

/// Why a reading is anomalous.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub score: f64,
    pub expected: Option<f64>,
    pub detail: String,
}

/// One detector's state for one channel.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum State {
    Window(Window),
    Ewma {
        n: u64,
        mean: f64,
        var: f64,
    },
    Rate {
        prev: Option<(Micros, f64)>,
    },
    /// `last`: time of the previous reading; a silence longer than `for`
    /// proves nothing about flatness and starts the stretch again.
    Flat {
        anchor: Option<(Micros, f64)>,
        last: Micros,
        reported: bool,
    },
    Forest(Box<ForestState>),
}

impl State {
    /// An `iforest` that has seen nothing yet.
    fn untrained_forest(&self) -> bool {
        matches!(self, State::Forest(f) if !f.trained && f.seen == 0 && f.prev.is_none())
    }

    /// State that the store's readings can (re)build: an untrained forest,
    /// or an empty window (windows are saved without their readings).
    fn wants_history(&self) -> bool {
        self.untrained_forest() || matches!(self, State::Window(w) if w.items.is_empty())
    }
}

/// An `iforest` detector on one channel.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct ForestState {
    /// The last `window`, for the distance-from-mean feature. Saved whole: a
    /// trained forest is not fed its history again.
    #[serde(with = "whole_window")]
    window: Window,
    /// The reading steps are measured from: the previous one, unless that
    /// was a lone outlier.
    prev: Option<f64>,
    /// The previous reading was anomalous (and did not become `prev`).
    skipped: bool,
    /// Training vectors: a reservoir sample of those seen while training.
    training: Vec<[f64; DIMS]>,
    seen: u64,
    rng: u64,
    trained: bool,
    /// Rebuilt from `training` and the seed when needed, never saved.
    #[serde(skip)]
    forest: Option<Forest>,
}

/// A window saved whole: its readings and its running sums (bit for bit,
/// so a restored forest scores as the one that was saved).
mod whole_window {
    use super::{Micros, Window};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::VecDeque;

    type Saved = (VecDeque<(Micros, f64)>, f64, f64, f64);

    pub fn serialize<S: Serializer>(w: &Window, s: S) -> Result<S::Ok, S::Error> {
        (&w.items, w.origin, w.sum, w.sumsq).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
        let (items, origin, sum, sumsq) = Saved::deserialize(d)?;
        Ok(Window { items, origin, sum, sumsq, sorted: Vec::new(), span: None })
    }
}

impl ForestState {
    /// The reading's features, once the window has enough readings to have a mean.
    fn features(&mut self, ts: Micros, v: f64, window: i64) -> Option<([f64; DIMS], f64)> {
        self.window.evict(ts - window, false);
        match self.prev {
            Some(p) if self.window.items.len() >= MIN_SAMPLES => {
                let (mean, _) = self.window.mean_sd();
                Some(([v, v - mean, v - p], mean))
            }
            _ => None,
        }
    }

    /// Adds the reading to the window and, unless it is a first outlier,
    /// makes it the reading the next step is measured from: the reading after
    /// a spike is judged against the one before it, and a new level becomes
    /// the reference at its second reading.
    fn remember(&mut self, ts: Micros, v: f64, anomalous: bool) {
        self.window.push(ts, v, false);
        if anomalous && !self.skipped && self.prev.is_some() {
            self.skipped = true;
        } else {
            self.prev = Some(v);
            self.skipped = false;
        }
    }

    /// Offers a vector to the training reservoir.
    fn train(&mut self, x: [f64; DIMS]) {
        self.seen += 1;
        if self.training.len() < FOREST_TRAINING {
            self.training.push(x);
        } else {
            let mut rng = Rng(self.rng);
            let j = (rng.next_u64() % self.seen) as usize;
            self.rng = rng.0;
            if j < FOREST_TRAINING {
                self.training[j] = x;
            }
        }
    }
}

/// The readings of the last `window`, with running sums and a sorted copy.
///
/// Saved without its readings (they are in the store already; saving them
/// would write every window — 1,000 channels × 5 min at 10 Hz: ~90 MB of
/// JSON — at every checkpoint): its sums and which readings it held
/// ([`Span`]). A run with a store puts the readings back from there when it
/// starts ([`Detectors::warm_up`]), keeping the sums as they were when the
/// same readings come back, so the windows continue bit for bit.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct Window {
    #[serde(skip)]
    items: VecDeque<(Micros, f64)>,
    /// Sums of `v − origin`: shifting keeps the variance exact at large levels.
    origin: f64,
    sum: f64,
    sumsq: f64,
    /// Kept only for `mad`.
    #[serde(skip)]
    sorted: Vec<f64>,
    /// Restored: the readings it held when it was saved, waiting to be put back.
    #[serde(default, rename = "held")]
    span: Option<Span>,
}

impl serde::Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Saved {
            origin: f64,
            sum: f64,
            sumsq: f64,
            held: Option<Span>,
        }
        Saved { origin: self.origin, sum: self.sum, sumsq: self.sumsq, held: self.held() }.serialize(s)
    }
}

/// Which readings a saved window held: how many, the first and last times.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct Span {
    n: usize,
    first: Micros,
    last: Micros,
}

impl Window {
    /// What a saved window held.
    fn held(&self) -> Option<Span> {
        match (self.items.front(), self.items.back()) {
            (Some(&(first, _)), Some(&(last, _))) => Some(Span { n: self.items.len(), first, last }),
            _ => self.span,
        }
    }

    /// Puts back the readings of a restored window from `history` (oldest
    /// first). The same readings as were saved keep the saved sums; others
    /// (retention took some, the store keeps no readings) start the sums afresh.
    fn refill(&mut self, history: &[(Micros, f64)], keep_sorted: bool) {
        let span = self.span.take();
        let same: Option<VecDeque<(Micros, f64)>> =
            span.map(|s| history.iter().filter(|(t, _)| *t >= s.first && *t <= s.last).copied().collect());
        match (span, same) {
            (Some(s), Some(items)) if items.len() == s.n => {
                self.items = items;
                if keep_sorted {
                    self.sorted = self.items.iter().map(|&(_, v)| v).collect();
                    self.sorted.sort_by(f64::total_cmp);
                }
            }
            _ => {
                *self = Window::default();
                for &(ts, v) in history {
                    self.push(ts, v, keep_sorted);
                }
            }
        }
    }

    fn push(&mut self, ts: Micros, v: f64, keep_sorted: bool) {
        if self.items.is_empty() {
            // Also a restored window that got no readings back: it starts afresh.
            self.origin = v;
            self.sum = 0.0;
            self.sumsq = 0.0;
            self.span = None;
        }
        self.items.push_back((ts, v));
        let x = v - self.origin;
        self.sum += x;
        self.sumsq += x * x;
        if keep_sorted {
            let at = self.sorted.partition_point(|&x| x < v);
            self.sorted.insert(at, v);
        }
    }

    fn evict(&mut self, before: Micros, keep_sorted: bool) {
        while self.items.front().is_some_and(|&(t, _)| t < before) || self.items.len() > MAX_WINDOW {
            let Some((_, v)) = self.items.pop_front() else { break };
            let x = v - self.origin;
            self.sum -= x;
            self.sumsq -= x * x;
            if keep_sorted {
                let at = self.sorted.partition_point(|&x| x < v);
                if self.sorted.get(at) == Some(&v) {
                    self.sorted.remove(at);
                }
            }
        }
        if self.items.is_empty() {
            // Running sums drift; start clean whenever the window empties.
            self.sum = 0.0;
            self.sumsq = 0.0;
        }
    }

    fn mean_sd(&self) -> (f64, f64) {
        let n = self.items.len() as f64;
        let mean = self.sum / n;
        let var = (self.sumsq / n - mean * mean).max(0.0);
        (self.origin + mean, var.sqrt())
    }

    fn median(&self) -> f64 {
        let s = &self.sorted;
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        }
    }

    /// Median absolute deviation from `m`: the k-th smallest |x − m| found by
    /// walking outwards from `m` in the sorted values (no allocation).
    fn mad(&self, m: f64) -> f64 {
        let s = &self.sorted;
        let n = s.len();
        let k = n / 2; // 0-based rank of the (upper) median deviation
        let mut hi = s.partition_point(|&x| x < m);
        let mut lo = hi;
        let mut d = 0.0;
        for _ in 0..=k {
            let left = if lo > 0 { Some(m - s[lo - 1]) } else { None };
            let right = if hi < n { Some(s[hi] - m) } else { None };
            d = match (left, right) {
                (Some(l), Some(r)) if l <= r => {
                    lo -= 1;
                    l
                }
                (_, Some(r)) => {
                    hi += 1;
                    r
                }
                (Some(l), None) => {
                    lo -= 1;
                    l
                }
                (None, None) => break,
            };
        }
        d
    }
}

/// A detector definition, ready to run.
pub struct Detector {
    pub plan: DetectPlan,
    /// `pattern`: the compiled steps.
    steps: Vec<minijinja::Expression<'static, 'static>>,
    id: Arc<str>,
    method: &'static str,
    matcher: GlobMatcher,
    threshold: f64,
}

impl Detector {
    pub fn new(plan: &DetectPlan) -> Result<Detector, String> {
        let method = plan.method.name();
        let matcher = Glob::new(&plan.channel).map_err(|e| format!("detector `{}`: {e}", plan.id))?.compile_matcher();
        let threshold = plan.threshold.unwrap_or(DetectPlan::default_threshold(plan.method));
        let mut steps = Vec::new();
        if plan.method == DetectMethod::Pattern {
            // Compiled expressions borrow their environment: one per process.
            let env = crate::model::template::shared_environment();
            for s in &plan.steps {
                steps
                    .push(env.compile_expression_owned(s.clone()).map_err(|e| format!("detector `{}`: {e}", plan.id))?);
            }
        }
        Ok(Detector { plan: plan.clone(), steps, id: Arc::from(plan.id.as_str()), method, matcher, threshold })
    }

    fn fresh(&self) -> State {
        match self.plan.method {
            DetectMethod::Ewma => State::Ewma { n: 0, mean: 0.0, var: 0.0 },
            DetectMethod::Rate => State::Rate { prev: None },
            DetectMethod::Flatline => State::Flat { anchor: None, last: Micros::MIN, reported: false },
            DetectMethod::Iforest => State::Forest(Box::default()),
            DetectMethod::Zscore | DetectMethod::Mad | DetectMethod::Pattern => State::Window(Window::default()),
        }
    }

    /// Looks at one reading; returns why it is anomalous, if it is.
    fn observe(&self, st: &mut State, first_ts: Micros, ts: Micros, v: f64) -> Option<Finding> {
        let warm = self.plan.warmup.is_none_or(|w| ts - first_ts >= w.as_micros() as i64);
        match st {
            State::Window(w) => {
                let mad = self.plan.method == DetectMethod::Mad;
                let window = self.plan.window.unwrap_or(DEFAULT_WINDOW).as_micros() as i64;
                w.evict(ts - window, mad);
                let judged = (w.items.len() >= MIN_SAMPLES && warm).then(|| {
                    if mad {
                        let m = w.median();
                        let mut scale = 1.4826 * w.mad(m);
                        if scale == 0.0 {
                            // More than half the window is one value (a sensor that
                            // was stuck): the MAD is 0 and every change would score
                            // infinite. Fall back to the mean absolute deviation.
                            let n = w.items.len() as f64;
                            scale = 1.2533 * w.items.iter().map(|&(_, x)| (x - m).abs()).sum::<f64>() / n;
                        }
                        (score(v - m, scale, m), m, "median")
                    } else {
                        let (mean, sd) = w.mean_sd();
                        (score(v - mean, sd, mean), mean, "mean")
                    }
                });
                w.push(ts, v, mad);
                let (s, expected, what) = judged?;
                (s > self.threshold).then(|| Finding {
                    score: s,
                    expected: Some(expected),
                    detail: format!("{} from the window's {what} {}", fmt(v - expected), fmt(expected)),
                })
            }
            State::Forest(f) => {
                let window = self.plan.window.unwrap_or(DEFAULT_WINDOW).as_micros() as i64;
                let Some((x, mean)) = f.features(ts, v, window) else {
                    f.remember(ts, v, false);
                    return None;
                };
                if !f.trained {
                    f.remember(ts, v, false);
                    f.train(x);
                    f.trained = match self.plan.warmup {
                        Some(w) => ts - first_ts >= w.as_micros() as i64 && f.training.len() >= FOREST_MIN_TRAINING,
                        None => f.training.len() >= FOREST_TRAINING,
                    };
                    return None;
                }
                let trees = self.plan.trees.unwrap_or(DetectPlan::DEFAULT_TREES);
                let seed = self.plan.seed.unwrap_or(DetectPlan::DEFAULT_SEED);
                let forest = f.forest.get_or_insert_with(|| Forest::build(&f.training, trees, seed));
                let scored = forest.score_above(&x, self.threshold);
                f.remember(ts, v, scored.is_some());
                scored.map(|s| Finding {
                    score: s.score,
                    expected: Some(mean),
                    detail: format!(
                        "isolated in {:.1} cuts where ordinary readings take {:.1} ({} from the window's mean {}, step {})",
                        s.path,
                        s.normal,
                        fmt(x[1]),
                        fmt(mean),
                        fmt(x[2])
                    ),
                })
            }
            State::Ewma { n, mean, var } => {
                let alpha = self.plan.alpha.unwrap_or(DetectPlan::DEFAULT_ALPHA);
                let judged = (*n >= MIN_SAMPLES as u64 && warm).then(|| (score(v - *mean, var.sqrt(), *mean), *mean));
                if *n == 0 {
                    *mean = v;
                } else {
                    let d = v - *mean;
                    *mean += alpha * d;
                    *var = (1.0 - alpha) * (*var + alpha * d * d);
                }
                *n += 1;
                let (s, expected) = judged?;
                (s > self.threshold).then(|| Finding {
                    score: s,
                    expected: Some(expected),
                    detail: format!("{} from the smoothed mean {}", fmt(v - expected), fmt(expected)),
                })
            }
            State::Rate { prev } => {
                let max = self.plan.max_rate.unwrap_or(f64::INFINITY);
                let found = prev.and_then(|(t0, v0)| {
                    let dt = (ts - t0) as f64 / 1e6;
                    (dt > 0.0).then(|| (v - v0) / dt)
                });
                *prev = Some((ts, v));
                let rate = found?;
                (rate.abs() > max).then(|| Finding {
                    score: rate.abs() / max,
                    expected: Some(max),
                    detail: format!("changing {}/s, more than {}/s", fmt(rate), fmt(max)),
                })
            }
            State::Flat { anchor, last, reported } => {
                let tol = self.plan.tolerance.unwrap_or(0.0);
                let need = self.plan.duration.map_or(i64::MAX, |d| d.as_micros() as i64);
                let gap = ts.saturating_sub(*last) > need;
                *last = ts;
                match *anchor {
                    Some((t0, v0)) if (v - v0).abs() <= tol && !gap => {
                        let flat = ts - t0;
                        if flat >= need && !*reported {
                            *reported = true;
                            return Some(Finding {
                                score: flat as f64 / need as f64,
                                expected: None,
                                detail: format!("within {} of {} for {} s", fmt(tol), fmt(v0), flat / 1_000_000),
                            });
                        }
                        None
                    }
                    _ => {
                        *anchor = Some((ts, v));
                        *reported = false;
                        None
                    }
                }
            }
        }
    }
}

/// |d| in units of `scale`. From a perfectly constant history a real change
/// is infinitely unusual; a difference at rounding level (relative to the
/// `level`) is none at all.
fn score(d: f64, scale: f64, level: f64) -> f64 {
    let noise = 1e-9 * (1.0 + level.abs());
    if d.abs() <= noise {
        0.0
    } else if scale > noise {
        d.abs() / scale
    } else {
        f64::INFINITY
    }
}

fn fmt(v: f64) -> String {
    let r = (v * 1e6).round() / 1e6;
    format!("{r}")
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Track {
    first_ts: Micros,
    state: State,
}

/// The detection stage over every `detect` definition of a plan.
/// Where a pattern detector stands: the next step to match, and when its
/// first step matched.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct PatternState {
    step: usize,
    start: Micros,
}

pub struct Detectors {
    detectors: Vec<Detector>,
    /// One state per `pattern` detector (index into `detectors`).
    patterns: Vec<(usize, PatternState)>,
    /// The last anomalies this stage made, by what names one (time,
    /// channel, detector), to recognise upstream copies.
    recent: VecDeque<(Micros, u64)>,
    /// Channel → (detector, its state) for every detector that matches it.
    channels: FxHashMap<Arc<str>, Vec<(usize, Track)>>,
    pub stats: DetectStats,
}

#[derive(Debug, Default, Clone)]
pub struct DetectStats {
    pub anomalies: u64,
    pub channels: u64,
    /// Anomalies per (detector, channel, day since the epoch): the backtest summary.
    pub by_day: std::collections::BTreeMap<(Arc<str>, Arc<str>, i64), u64>,
}

impl Detectors {
    pub fn new(plans: &[DetectPlan]) -> Result<Detectors, String> {
        let detectors: Vec<Detector> = plans.iter().map(Detector::new).collect::<Result<_, _>>()?;
        let patterns = detectors
            .iter()
            .enumerate()
            .filter(|(_, d)| d.plan.method == DetectMethod::Pattern)
            .map(|(i, _)| (i, PatternState::default()))
            .collect();
        Ok(Detectors {
            detectors,
            patterns,
            recent: VecDeque::with_capacity(RECENT),
            channels: FxHashMap::default(),
            stats: DetectStats::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// Every detector's state, as JSON: `{detector: {method, channels: {channel: track}}}`.
    /// Saved in the store at the end of a live run, so that the next `--once`
    /// run continues where this one stopped.
    pub fn save_state(&self) -> String {
        let mut by_detector: FxHashMap<&str, serde_json::Map<String, serde_json::Value>> = FxHashMap::default();
        for (channel, tracks) in &self.channels {
            for (i, track) in tracks {
                if let Ok(v) = serde_json::to_value(track) {
                    by_detector.entry(&self.detectors[*i].plan.id).or_default().insert(channel.to_string(), v);
                }
            }
        }
        let mut doc: serde_json::Map<String, serde_json::Value> = by_detector
            .into_iter()
            .map(|(id, channels)| {
                let d = self.detectors.iter().find(|d| d.plan.id == id).expect("saved from these detectors");
                (id.to_string(), serde_json::json!({"method": d.method, "channels": channels}))
            })
            .collect();
        for (i, st) in &self.patterns {
            let d = &self.detectors[*i];
            doc.insert(d.plan.id.clone(), serde_json::json!({"method": d.method, "pattern": st}));
        }
        serde_json::Value::Object(doc).to_string()
    }

    /// Continues from [`Detectors::save_state`]. A detector whose method
    /// changed since starts afresh; one added since starts afresh on every
    /// channel it matches.
    pub fn restore_state(&mut self, json: &str) {
        let Ok(serde_json::Value::Object(doc)) = serde_json::from_str::<serde_json::Value>(json) else {
            tracing::warn!("saved detector state does not parse; starting afresh");
            return;
        };
        for (i, d) in self.detectors.iter().enumerate() {
            let Some(saved) = doc.get(&d.plan.id) else { continue };
            if saved["method"] != d.method {
                continue;
            }
            if let Ok(st) = serde_json::from_value::<PatternState>(saved["pattern"].clone()) {
                if let Some(p) = self.patterns.iter_mut().find(|(j, _)| *j == i) {
                    p.1 = st;
                }
                continue;
            }
            let Some(channels) = saved["channels"].as_object() else { continue };
            for (channel, v) in channels {
                let Ok(track) = serde_json::from_value::<Track>(v.clone()) else { continue };
                if self.channels.len() >= MAX_CHANNELS || !d.matcher.is_match(channel) {
                    continue;
                }
                self.channels.entry(Arc::from(channel.as_str())).or_default().push((i, track));
            }
        }
        // Detectors with nothing saved for a restored channel start there afresh.
        for (channel, tracks) in self.channels.iter_mut() {
            for (i, d) in self.detectors.iter().enumerate() {
                let per_channel = d.plan.method != DetectMethod::Pattern;
                if per_channel && d.matcher.is_match(&**channel) && !tracks.iter().any(|(j, _)| *j == i) {
                    tracks.push((i, Track { first_ts: Micros::MIN, state: d.fresh() }));
                }
            }
            tracks.sort_by_key(|(i, _)| *i);
        }
        self.stats.channels = self.channels.values().map(|t| t.len() as u64).sum();
    }

    /// Channels among `known` with an `iforest` detector that has not trained
    /// or a `zscore`/`mad` window to fill, with the history they want:
    /// readings since how long before `before` (`None`: no bound) and how
    /// many at most. A restored window wants back every reading it held.
    pub fn wanting_history<'a>(&self, known: &'a [String], before: Micros) -> Vec<(&'a str, Option<Duration>, usize)> {
        let mut wanted: Vec<(&str, Option<Duration>, usize)> = Vec::new();
        for channel in known {
            if self.channels.len() + wanted.len() >= MAX_CHANNELS {
                break;
            }
            for (i, d) in self.detectors.iter().enumerate() {
                let windowed = matches!(d.plan.method, DetectMethod::Zscore | DetectMethod::Mad);
                if !(windowed || d.plan.method == DetectMethod::Iforest) || !d.matcher.is_match(channel) {
                    continue;
                }
                let track = self.channels.get(channel.as_str()).and_then(|t| t.iter().find(|(j, _)| *j == i));
                if track.is_some_and(|(_, t)| !t.state.wants_history()) {
                    continue;
                }
                let window = d.plan.window.unwrap_or(DEFAULT_WINDOW);
                let held = match track {
                    Some((_, Track { state: State::Window(w), .. })) => w.span.map(|s| s.first),
                    _ => None,
                };
                let since =
                    held.map_or(window, |first| window.max(Duration::from_micros((before - first).max(0) as u64)));
                let want = match (windowed, d.plan.warmup) {
                    (true, _) => (Some(since), MAX_WINDOW),
                    (false, Some(w)) => (Some(w + window), MAX_WINDOW),
                    (false, None) => (None, FOREST_TRAINING + MIN_SAMPLES + 1),
                };
                match wanted.iter_mut().find(|(c, ..)| *c == channel.as_str()) {
                    Some(w) => {
                        w.1 = w.1.zip(want.0).map(|(a, b)| a.max(b));
                        w.2 = w.2.max(want.1);
                    }
                    None => wanted.push((channel.as_str(), want.0, want.1)),
                }
            }
        }
        wanted
    }

    /// Trains the untrained forests of `channel` on its stored `history`
    /// (oldest first) and fills its empty windows from it. Other detectors
    /// are left alone, and nothing found in the history is reported.
    pub fn warm_up(&mut self, channel: &str, history: &[(Micros, f64)]) {
        let Some(&(first, _)) = history.first() else { return };
        let channel: Arc<str> = Arc::from(channel);
        if !self.channels.contains_key(&channel) {
            let tracks = self.fresh_tracks(&channel, first);
            self.channels.insert(channel.clone(), tracks);
        }
        let tracks = self.channels.get_mut(&channel).expect("inserted above");
        for (i, track) in tracks.iter_mut() {
            if !track.state.wants_history() {
                continue;
            }
            let d = &self.detectors[*i];
            if let State::Window(w) = &mut track.state {
                w.refill(history, d.plan.method == DetectMethod::Mad);
                continue;
            }
            track.first_ts = first;
            for &(ts, v) in history {
                d.observe(&mut track.state, track.first_ts, ts, v);
            }
        }
    }

    fn fresh_tracks(&mut self, channel: &str, ts: Micros) -> Vec<(usize, Track)> {
        let tracks: Vec<(usize, Track)> = self
            .detectors
            .iter()
            .enumerate()
            .filter(|(_, d)| d.plan.method != DetectMethod::Pattern && d.matcher.is_match(channel))
            .map(|(i, d)| (i, Track { first_ts: ts, state: d.fresh() }))
            .collect();
        self.stats.channels += tracks.len() as u64;
        tracks
    }

    /// Passes `batch` on into `out`, with anomaly records added.
    pub fn process(&mut self, batch: Vec<Record>, out: &mut Vec<Record>) {
        out.reserve(batch.len());
        for rec in batch {
            // An anomaly that comes in right after this stage made the same
            // one (a detect stage upstream in a pipe) is not printed twice.
            if let Record::Anomaly(a) = &rec {
                if a.from_input && self.recent.contains(&identity(a)) {
                    continue;
                }
            }
            let Record::Reading(r) = &rec else {
                out.push(rec);
                continue;
            };
            let mut found = Vec::new();
            if !self.patterns.is_empty() {
                self.observe_patterns(r, &mut found);
            }
            let judged = (r.quality != Quality::Bad).then_some(r.value).flatten().filter(|v| v.is_finite());
            if let Some(v) = judged {
                self.observe(r.ts, &r.channel, v, &mut found);
            }
            out.push(rec);
            for a in found {
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(identity(&a));
                out.push(Record::Anomaly(Box::new(a)));
            }
        }
    }

    /// The statistical and threshold detectors on one value.
    fn observe(&mut self, ts: Micros, channel: &Arc<str>, v: f64, found: &mut Vec<Anomaly>) {
        // A channel seen before (nearly every reading): one lookup.
        if let Some(tracks) = self.channels.get_mut(channel) {
            return observe_tracks(&self.detectors, &mut self.stats, tracks, ts, channel, v, found);
        }
        if self.channels.len() >= MAX_CHANNELS {
            return;
        }
        let tracks = self.fresh_tracks(channel, ts);
        let tracks = self.channels.entry(channel.clone()).or_insert(tracks);
        observe_tracks(&self.detectors, &mut self.stats, tracks, ts, channel, v, found);
    }

    /// Pattern detectors: the reading may be the next step of each.
    fn observe_patterns(&mut self, r: &Reading, found: &mut Vec<Anomaly>) {
        let mut ctx: Option<minijinja::Value> = None;
        for (i, st) in self.patterns.iter_mut() {
            let d = &self.detectors[*i];
            if !d.matcher.is_match(&*r.channel) {
                continue;
            }
            let within = d.plan.within.map_or(i64::MAX, |w| w.as_micros() as i64);
            if st.step > 0 && r.ts - st.start > within {
                *st = PatternState::default(); // too slow: start over
            }
            let ctx = ctx.get_or_insert_with(|| crate::model::template::reading_context(r));
            let holds = |k: usize| d.steps[k].eval(&*ctx).map(|v| v.is_true()).unwrap_or(false);
            if !holds(st.step) {
                continue;
            }
            if st.step == 0 {
                st.start = r.ts;
            }
            st.step += 1;
            if st.step == d.steps.len() {
                let took = (r.ts - st.start) as f64 / 1e6;
                *st = PatternState::default();
                self.stats.anomalies += 1;
                let day = r.ts.div_euclid(86_400_000_000);
                *self.stats.by_day.entry((d.id.clone(), r.channel.clone(), day)).or_default() += 1;
                let f = Finding {
                    score: took,
                    expected: d.plan.within.map(|w| w.as_secs_f64()),
                    detail: format!("all {} steps in order within {} s", d.steps.len(), fmt(took)),
                };
                found.push(anomaly(d, r.ts, &r.channel, r.value, &f));
            }
        }
    }
}

/// What names an anomaly: one detector finds at most one on a channel at
/// one time. (A hash of channel and detector: no allocation per anomaly.)
fn identity(a: &Anomaly) -> (Micros, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = crate::model::intern::FxHasher::default();
    (a.channel.as_str(), a.detector.as_str()).hash(&mut h);
    (a.ts, h.finish())
}

/// The anomaly record (docs/contract.md §3) of a finding.
fn anomaly(d: &Detector, ts: Micros, channel: &str, v: Option<f64>, f: &Finding) -> Anomaly {
    Anomaly {
        ts,
        channel: channel.to_string(),
        detector: d.id.to_string(),
        method: d.method.to_string(),
        value: v,
        score: Some(f.score),
        expected: f.expected,
        threshold: Some(d.threshold),
        detail: f.detail.clone(),
        from_input: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Reading;
    use proptest::prelude::*;
    use std::time::Duration;

    fn plan(method: DetectMethod) -> DetectPlan {
        DetectPlan {
            id: "d".into(),
            channel: "x.*".into(),
            method,
            window: Some(Duration::from_secs(60)),
            threshold: None,
            alpha: None,
            tolerance: None,
            duration: Some(Duration::from_secs(30)),
            max_rate: Some(5.0),
            trees: None,
            warmup: None,
            seed: None,
            steps: vec![],
            within: None,
        }
    }

    /// A good reading of channel x.a at `ts_s` seconds.
    /// An anomaly's NDJSON line, without the newline.
    fn line(a: &Anomaly) -> String {
        let mut b = Vec::new();
        a.write_ndjson(&mut b);
        String::from_utf8(b).unwrap().trim_end().to_string()
    }

    fn reading(ts_s: i64, v: f64) -> Record {
        Reading::sample("x.a", ts_s, Some(v))
    }

    /// Anomaly lines for `values` sampled once a second on channel x.a.
    fn run(p: DetectPlan, values: impl Iterator<Item = f64>) -> Vec<String> {
        let mut d = Detectors::new(&[p]).unwrap();
        let batch: Vec<Record> = values.enumerate().map(|(i, v)| reading(i as i64, v)).collect();
        let mut out = Vec::new();
        d.process(batch, &mut out);
        out.into_iter()
            .filter_map(|r| match r {
                Record::Anomaly(a) => Some(line(&a)),
                _ => None,
            })
            .collect()
    }

    const STATISTICAL: [DetectMethod; 3] = [DetectMethod::Zscore, DetectMethod::Ewma, DetectMethod::Mad];

    #[test]
    fn a_spike_is_found_by_every_statistical_method() {
        for m in STATISTICAL {
            let series = (0..300).map(|i| if i == 200 { 50.0 } else { 10.0 + ((i as f64) * 0.7).sin() });
            let found = run(plan(m), series);
            assert_eq!(found.len(), 1, "{m:?}: {found:?}");
            assert!(found[0].contains("\"ts\":\"1970-01-01T00:03:20.000Z\"") && found[0].contains("\"value\":50"));
        }
    }

    #[test]
    fn iforest_finds_a_spike_on_a_sine_once_and_is_deterministic() {
        // The case the textbook forest misses (0.58 against 0.49).
        let mut rng = Rng(5);
        let series: Vec<f64> = (0..2000)
            .map(|i| if i == 1500 { 60.0 } else { 10.0 + (i as f64 * 0.05).sin() + 0.05 * rng.gauss() })
            .collect();
        let mut p = plan(DetectMethod::Iforest);
        p.seed = Some(42);
        let found = run(p.clone(), series.iter().copied());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("\"ts\":\"1970-01-01T00:25:00.000Z\"") && found[0].contains("isolated in"));
        assert_eq!(run(p.clone(), series.iter().copied()), found, "same seed, same anomalies");
        // Silent while training: a spike among the first 512 vectors is learned, not reported.
        let early: Vec<f64> = series.iter().enumerate().map(|(i, &v)| if i == 100 { 60.0 } else { v }).collect();
        assert!(run(p, early.into_iter().take(1400)).is_empty());
    }

    #[test]
    fn rate_and_flatline() {
        let ramp = (0..100).map(|i| if i < 50 { i as f64 } else { 49.0 + (i - 49) as f64 * 10.0 });
        let found = run(plan(DetectMethod::Rate), ramp);
        assert_eq!(found.len(), 50);
        assert!(found[0].contains("changing 10/s, more than 5/s"));
        let stuck = (0..200).map(|i| if (50..150).contains(&i) { 7.0 } else { i as f64 });
        let found = run(plan(DetectMethod::Flatline), stuck);
        assert_eq!(found.len(), 1, "one anomaly per flat stretch: {found:?}");
        // The same value before and after a silence longer than `for` is not a flat line.
        let mut d = Detectors::new(&[plan(DetectMethod::Flatline)]).unwrap();
        let mut out = Vec::new();
        d.process(vec![reading(0, 3.0), reading(1, 3.0), reading(100, 3.0), reading(101, 3.0)], &mut out);
        assert_eq!(d.stats.anomalies, 0);
        assert!(found[0].contains("\"ts\":\"1970-01-01T00:01:20.000Z\""));
    }

    /// Two consecutive runs with the state saved and restored in between
    /// find exactly what one continuous run finds.
    #[test]
    fn two_runs_with_saved_state_equal_one_continuous_run() {
        let plans: Vec<DetectPlan> = [
            DetectMethod::Zscore,
            DetectMethod::Ewma,
            DetectMethod::Mad,
            DetectMethod::Rate,
            DetectMethod::Flatline,
            DetectMethod::Iforest,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, m)| DetectPlan { id: format!("d{i}"), ..plan(m) })
        .map(|p| match p.method {
            DetectMethod::Iforest => DetectPlan { warmup: Some(Duration::from_secs(150)), trees: Some(30), ..p },
            _ => p,
        })
        .collect();
        let series: Vec<f64> = (0..600)
            .map(|i| match i {
                200 | 450 => 80.0,
                300..=360 => 5.0,
                _ => 10.0 + (i as f64 * 0.3).sin() + (i % 7) as f64 * 0.05,
            })
            .collect();
        let records =
            |from: usize, to: usize| -> Vec<Record> { (from..to).map(|i| reading(i as i64, series[i])).collect() };
        let anomalies = |out: Vec<Record>| -> Vec<String> {
            out.into_iter().filter_map(|r| if let Record::Anomaly(a) = r { Some(line(&a)) } else { None }).collect()
        };
        let mut whole = Detectors::new(&plans).unwrap();
        let mut out = Vec::new();
        whole.process(records(0, 600), &mut out);
        let expected = anomalies(out);
        assert!(expected.len() >= 4, "{expected:?}");
        assert!(expected.iter().any(|a| a.contains("\"detector\":\"d5\"")), "the forest finds the 80s");
        for cut in [1, 199, 200, 330, 599] {
            let mut first = Detectors::new(&plans).unwrap();
            let mut out = Vec::new();
            first.process(records(0, cut), &mut out);
            let saved = first.save_state();
            let mut second = Detectors::new(&plans).unwrap();
            second.restore_state(&saved);
            // As the engine does: windows (saved empty) and untrained forests
            // are filled from the readings before the cut (the store's).
            let known = vec!["x.a".to_string()];
            let before = cut as i64 * 1_000_000;
            let wanted: Vec<(String, Option<Duration>, usize)> =
                second.wanting_history(&known, before).into_iter().map(|(c, d, n)| (c.to_string(), d, n)).collect();
            for (channel, span, limit) in wanted {
                let since = span.map_or(i64::MIN, |d| before - d.as_micros() as i64);
                let history: Vec<(Micros, f64)> =
                    (0..cut).map(|i| (i as i64 * 1_000_000, series[i])).filter(|(ts, _)| *ts >= since).collect();
                let history = &history[history.len().saturating_sub(limit)..];
                second.warm_up(&channel, history);
            }
            second.process(records(cut, 600), &mut out);
            let got = anomalies(out);
            let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
            assert!(
                got.len() == expected.len() && first_diff.is_none(),
                "cut at {cut}: {} vs {} anomalies, first difference at {first_diff:?}: {:?} vs {:?}",
                got.len(),
                expected.len(),
                first_diff.map(|i| &got[i]),
                first_diff.map(|i| &expected[i]),
            );
        }
    }

    #[test]
    fn a_pattern_is_steps_in_order_within_the_window() {
        let mut p = plan(DetectMethod::Pattern);
        p.channel = "pump.*".into();
        p.steps = vec!["channel == 'pump.run' and value == 1".into(), "channel == 'pump.pres' and value < 2".into()];
        p.within = Some(Duration::from_secs(10));
        let at = |ch: &str, t: i64, v: f64| {
            let Record::Reading(mut r) = reading(t, v) else { unreachable!() };
            r.channel = Arc::from(ch);
            Record::Reading(r)
        };
        let seq = |d: &mut Detectors, recs: Vec<Record>| {
            let mut out = Vec::new();
            d.process(recs, &mut out);
            out.into_iter()
                .filter_map(|r| if let Record::Anomaly(a) = r { Some(line(&a)) } else { None })
                .collect::<Vec<_>>()
        };
        let mut d = Detectors::new(&[p.clone()]).unwrap();
        // On, pressure still fine, then low 5 s after the start: found.
        let found = seq(&mut d, vec![at("pump.run", 0, 1.0), at("pump.pres", 1, 3.0), at("pump.pres", 5, 1.5)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("all 2 steps in order within 5 s") && found[0].contains("\"method\":\"pattern\""));
        // Too slow (15 s): nothing; and the state carries over a save and restore.
        let found = seq(&mut d, vec![at("pump.run", 20, 1.0)]);
        assert!(found.is_empty());
        let mut again = Detectors::new(&[p]).unwrap();
        again.restore_state(&d.save_state());
        assert!(seq(&mut again, vec![at("pump.pres", 35, 1.5)]).is_empty());
        let found = seq(&mut again, vec![at("pump.run", 40, 1.0), at("pump.pres", 41, 0.5)]);
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn mad_walks_to_the_right_deviation() {
        let mut w = Window::default();
        for (t, v) in [1.0, 2.0, 3.0, 4.0, 100.0].iter().enumerate() {
            w.push(t as i64, *v, true);
        }
        // deviations from 3: 2, 1, 0, 1, 97 → sorted 0, 1, 1, 2, 97 → median 1
        assert_eq!(w.median(), 3.0);
        assert_eq!(w.mad(3.0), 1.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Silent on a constant and on a clean sine, whatever their level,
        /// when the window spans the sine's cycle. (A window much shorter than
        /// the cycle sees a trend; at the crest of a slow sine the readings
        /// pile up and the robust MAD shrinks: choose windows that span the
        /// signal's cycle, as the README says.)
        #[test]
        fn silent_on_constants_and_clean_sines(level in -1e4f64..1e4, amp in 0.0f64..100.0, period in 20.0f64..600.0) {
            for m in STATISTICAL {
                let mut p = plan(m);
                p.window = Some(Duration::from_secs(600));
                prop_assert!(run(p.clone(), (0..1500).map(|_| level)).is_empty(), "{:?} on a constant", m);
                let sine = (0..1500).map(|i| level + amp * (i as f64 * std::f64::consts::TAU / period).sin());
                let found = run(p, sine);
                prop_assert!(found.is_empty(), "{:?} on a sine: {:?}", m, found.first());
            }
            let slow = (0..400).map(|i| level + (i as f64 * std::f64::consts::TAU / period).sin());
            prop_assert!(run(plan(DetectMethod::Rate), slow).is_empty());
        }

        /// The forest is silent on a constant and on a clean sine when its
        /// warm-up spans two cycles.
        #[test]
        fn iforest_silent_on_constants_and_clean_sines(level in -1e4f64..1e4, amp in 0.0f64..100.0, period in 20.0f64..600.0, seed in 0u64..1000) {
            let mut p = plan(DetectMethod::Iforest);
            p.window = Some(Duration::from_secs(600));
            p.warmup = Some(Duration::from_secs_f64(2.0 * period));
            p.trees = Some(50);
            p.seed = Some(seed);
            prop_assert!(run(p.clone(), (0..1500).map(|_| level)).is_empty(), "on a constant");
            let sine = (0..1500).map(|i| level + amp * (i as f64 * std::f64::consts::TAU / period).sin());
            let found = run(p, sine);
            prop_assert!(found.is_empty(), "on a sine: {:?}", found.first());
        }
    }
}
