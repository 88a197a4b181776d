//! The `simulate` source: a deterministic plant with injected faults.
//!
//! Each signal has its own random stream, seeded from the source's seed and
//! the channel name, so adding a signal does not change the others. Sample
//! `k` of a source is at `start + k × interval`; the same spec and seed give
//! the same readings, byte for byte, on the virtual clock.

use std::sync::Arc;

use crate::compile::{FaultPlan, SignalPlan, SimulatePlan};
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::model::time::Micros;
use crate::spec::{FaultKind, Shape};

use crate::model::rng::Rng;

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

struct Signal {
    plan: SignalPlan,
    channel: Arc<str>,
    unit: Option<Arc<str>>,
    rng: Rng,
    walk: f64,
    /// Value held while a `stuck` fault lasts.
    held: Option<f64>,
}

pub struct Simulator {
    source: Arc<str>,
    interval_us: i64,
    start: Micros,
    k: u64,
    signals: Vec<Signal>,
}

impl Simulator {
    pub fn new(id: &str, plan: &SimulatePlan, start: Micros) -> Self {
        let signals = plan
            .signals
            .iter()
            .map(|s| Signal {
                plan: s.clone(),
                channel: Arc::from(s.channel.as_str()),
                unit: s.unit.as_deref().map(Arc::from),
                rng: Rng(plan.seed ^ fnv1a(&s.channel)),
                walk: s.mean,
                held: None,
            })
            .collect();
        Simulator {
            source: Arc::from(id),
            interval_us: (plan.interval.as_micros() as i64).max(1),
            start: plan.start.unwrap_or(start),
            k: 0,
            signals,
        }
    }

    /// Time of the next sample.
    pub fn next_ts(&self) -> Micros {
        self.start + self.k as i64 * self.interval_us
    }

    pub fn signal_count(&self) -> usize {
        self.signals.len()
    }

    pub fn interval_us(&self) -> i64 {
        self.interval_us
    }

    /// Produces the next sample on the virtual clock: one of every signal
    /// (fewer during dropouts) into `out`.
    pub fn tick(&mut self, out: &mut Vec<Record>) {
        self.tick_at(self.next_ts(), out);
    }

    /// Produces a sample stamped `ts` (live pacing uses the wall clock).
    pub fn tick_at(&mut self, ts: Micros, out: &mut Vec<Record>) {
        let elapsed_us = ts - self.start;
        self.k += 1;
        for s in &mut self.signals {
            if let Some(v) = s.sample(elapsed_us, self.interval_us) {
                out.push(Record::Reading(Reading {
                    ts,
                    channel: s.channel.clone(),
                    value: Some(v),
                    text: None,
                    unit: s.unit.clone(),
                    quality: Quality::Good,
                    flags: Flags::empty(),
                    source: self.source.clone(),
                    from_input: false,
                    fusion: None,
                }));
            }
        }
    }
}

/// Whether fault `f` is active at `t_us` into the run; if so, how long
/// since this occurrence of it began (a repeating fault begins again every
/// `every`).
fn active(f: &FaultPlan, t_us: i64, interval_us: i64) -> Option<i64> {
    let at = f.at.as_micros() as i64;
    let len = match (f.duration, f.kind) {
        (Some(d), _) => d.as_micros() as i64,
        (None, FaultKind::Spike) => interval_us,
        (None, FaultKind::Stuck | FaultKind::Dropout | FaultKind::Drift) => i64::MAX / 4,
    };
    if t_us < at {
        return None;
    }
    let since = match f.every {
        Some(every) => (t_us - at) % (every.as_micros() as i64).max(1),
        None => t_us - at,
    };
    (since < len.max(1)).then_some(since)
}

impl Signal {
    fn sample(&mut self, t_us: i64, interval_us: i64) -> Option<f64> {
        let p = &self.plan;
        let t = t_us as f64 / 1e6;
        let period = p.period.as_secs_f64().max(1e-6);
        let phase = (t / period).fract();
        let base = match p.shape {
            Shape::Constant => p.mean,
            Shape::Sine => p.mean + p.amplitude * (std::f64::consts::TAU * t / period).sin(),
            Shape::Ramp => p.mean - p.amplitude + 2.0 * p.amplitude * phase,
            Shape::Step => {
                if phase < 0.5 {
                    p.mean - p.amplitude
                } else {
                    p.mean + p.amplitude
                }
            }
            Shape::RandomWalk => {
                // A mean-reverting walk stays near `mean` however long it runs.
                self.walk += p.amplitude * self.rng.gauss() - 0.01 * (self.walk - p.mean);
                self.walk
            }
        };
        // The noise draw happens every sample, faults or not, so a fault never
        // shifts the random stream of what follows it.
        let noise = if p.noise > 0.0 { p.noise * self.rng.gauss() } else { 0.0 };
        let mut v = base + noise;
        let mut stuck = false;
        for f in &p.faults {
            let Some(since) = active(f, t_us, interval_us) else { continue };
            match f.kind {
                FaultKind::Dropout => return None,
                FaultKind::Stuck => stuck = true,
                FaultKind::Spike => {
                    v += f.magnitude.unwrap_or(if p.amplitude > 0.0 { 10.0 * p.amplitude } else { 10.0 })
                }
                FaultKind::Drift => v += f.magnitude.unwrap_or(1.0) * since as f64 / 60e6,
            }
        }
        if let Some(d) = p.decimals {
            let m = 10f64.powi(i32::from(d));
            v = (v * m).round() / m;
        }
        if stuck {
            return Some(*self.held.get_or_insert(v));
        }
        self.held = None;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plan(shape: Shape, faults: Vec<FaultPlan>) -> SimulatePlan {
        SimulatePlan {
            interval: Duration::from_secs(1),
            seed: 7,
            start: Some(0),
            signals: vec![SignalPlan {
                channel: "a".into(),
                shape,
                mean: 10.0,
                amplitude: 2.0,
                period: Duration::from_secs(4),
                noise: 0.0,
                decimals: None,
                unit: None,
                faults,
            }],
        }
    }

    fn values(sim: &mut Simulator, n: usize) -> Vec<Option<f64>> {
        (0..n)
            .map(|_| {
                let mut out = Vec::new();
                sim.tick(&mut out);
                out.first().and_then(|r| if let Record::Reading(r) = r { r.value } else { None })
            })
            .collect()
    }

    #[test]
    fn shapes() {
        let step = values(&mut Simulator::new("s", &plan(Shape::Step, vec![]), 0), 4);
        assert_eq!(step, vec![Some(8.0), Some(8.0), Some(12.0), Some(12.0)]);
        let ramp = values(&mut Simulator::new("s", &plan(Shape::Ramp, vec![]), 0), 4);
        assert_eq!(ramp, vec![Some(8.0), Some(9.0), Some(10.0), Some(11.0)]);
        let sine = values(&mut Simulator::new("s", &plan(Shape::Sine, vec![]), 0), 2);
        assert!((sine[1].unwrap() - 12.0).abs() < 1e-9);
    }

    #[test]
    fn faults() {
        let f = |kind, at, dur: Option<u64>| FaultPlan {
            kind,
            at: Duration::from_secs(at),
            duration: dur.map(Duration::from_secs),
            magnitude: Some(100.0),
            every: None,
        };
        let v = values(&mut Simulator::new("s", &plan(Shape::Ramp, vec![f(FaultKind::Stuck, 1, Some(2))]), 0), 4);
        assert_eq!(v, vec![Some(8.0), Some(9.0), Some(9.0), Some(11.0)]);
        let v = values(&mut Simulator::new("s", &plan(Shape::Constant, vec![f(FaultKind::Spike, 2, None)]), 0), 4);
        assert_eq!(v, vec![Some(10.0), Some(10.0), Some(110.0), Some(10.0)]);
        let v = values(&mut Simulator::new("s", &plan(Shape::Constant, vec![f(FaultKind::Dropout, 1, Some(2))]), 0), 4);
        assert_eq!(v, vec![Some(10.0), None, None, Some(10.0)]);
    }

    #[test]
    fn faults_repeat_every_period() {
        let f = |kind, at, dur: Option<u64>, magnitude| FaultPlan {
            kind,
            at: Duration::from_secs(at),
            duration: dur.map(Duration::from_secs),
            magnitude: Some(magnitude),
            every: Some(Duration::from_secs(4)),
        };
        let spike = f(FaultKind::Spike, 1, None, 100.0);
        let v = values(&mut Simulator::new("s", &plan(Shape::Constant, vec![spike]), 0), 10);
        let at: Vec<usize> = v.iter().enumerate().filter(|(_, v)| **v == Some(110.0)).map(|(i, _)| i).collect();
        assert_eq!(at, vec![1, 5, 9]);
        let dropout = f(FaultKind::Dropout, 2, Some(2), 0.0);
        let v = values(&mut Simulator::new("s", &plan(Shape::Constant, vec![dropout]), 0), 8);
        assert_eq!(
            v.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, true, false, false, true, true, false, false]
        );
        // A drift starts from zero at each repetition (60 per minute = 1 per second).
        let drift = f(FaultKind::Drift, 0, Some(3), 60.0);
        let v = values(&mut Simulator::new("s", &plan(Shape::Constant, vec![drift]), 0), 8);
        assert_eq!(v, [10.0, 11.0, 12.0, 10.0, 10.0, 11.0, 12.0, 10.0].map(Some));
        // A stuck value is taken afresh each time.
        let stuck = f(FaultKind::Stuck, 1, Some(2), 0.0);
        let v = values(&mut Simulator::new("s", &plan(Shape::Ramp, vec![stuck]), 0), 8);
        assert_eq!(v, [8.0, 9.0, 9.0, 11.0, 8.0, 9.0, 9.0, 11.0].map(Some));
    }

    #[test]
    fn same_seed_same_values_and_noise_is_seeded() {
        let mut p = plan(Shape::RandomWalk, vec![]);
        p.signals[0].noise = 0.5;
        let a = values(&mut Simulator::new("s", &p, 0), 50);
        let b = values(&mut Simulator::new("s", &p, 0), 50);
        assert_eq!(a, b);
        p.seed = 8;
        assert_ne!(a, values(&mut Simulator::new("s", &p, 0), 50));
    }
}
