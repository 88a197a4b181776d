//! Fusion of redundant sensors: one channel computed from several inputs.
//!
//! Every reading passes through unchanged (except for the `suspect` mark
//! below); fused readings are added after the readings that complete them.
//!
//! **When.** Readings of a group's inputs gather into a *round* that starts
//! with the first one. The round is fused when every input has reported in
//! it, when a reading arrives more than `window` after the round began, or
//! when an input reports a second time (it is faster than the others); what
//! is left is fused at the end of the stream or when the wall clock passes
//! the window (live runs). A fused reading is stamped with the round's
//! newest input time.
//!
//! **What.** The candidates are the latest value of each input that is not
//! `bad` and is at most `window` older than the round. Those farther than
//! `max_spread` from their median are voted out; the rest are combined by
//! the method: `mean`, `median`, `weighted` (inverse variance, each input's
//! sigma given or estimated from its residuals), or `kalman` (one 1-D filter
//! over all inputs, constant or constant-velocity). With fewer than
//! `min_inputs` accepted the fused reading is `suspect`, with none `bad`.
//! An input voted out for longer than `suspect_after` gets `suspect` and the
//! `voted_out` flag on its own readings, until it agrees again.
//!
//! **Pipes.** A later stage fuses again (`detect` runs fusion too). A fused
//! reading that arrives with the input for a round this stage has just fused
//! itself (same group, same time) is the same reading made upstream and is
//! dropped, so `acquire | fuse | detect` prints each fused reading once.

use std::sync::Arc;

use crate::compile::FusePlan;
use crate::model::intern::FxHashMap;
use crate::model::record::{Flags, Fusion, Quality, Reading, Record};
use crate::model::time::Micros;
use crate::spec::{FuseMethod, KalmanModel};

/// Weight of a new residual in an input's estimated variance (`weighted`).
const SIGMA_ALPHA: f64 = 0.05;
/// Smallest variance an estimate may reach: a sensor that agreed perfectly
/// for a while must not take all the weight.
const MIN_VARIANCE: f64 = 1e-6;

#[derive(Debug, Clone, Copy, Default)]
struct Latest {
    ts: Micros,
    value: Option<f64>,
    usable: bool,
}

#[derive(Debug, Clone)]
struct Input {
    channel: Arc<str>,
    latest: Latest,
    in_round: bool,
    /// Estimated variance of this input's residual (`weighted` without sigma).
    variance: f64,
    given_sigma: Option<f64>,
    /// Since when it has been voted out without a break.
    voted_out_since: Option<Micros>,
    suspect: bool,
}

/// A 1-D Kalman filter: position and, for the velocity model, its rate.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Kalman {
    ts: Option<Micros>,
    x: f64,
    v: f64,
    /// Covariance [[pxx, pxv], [pxv, pvv]].
    p: [f64; 3],
}

impl Kalman {
    fn predict(&mut self, ts: Micros, q: f64, velocity: bool) {
        let Some(prev) = self.ts else { return };
        let dt = ((ts - prev) as f64 / 1e6).max(0.0);
        if velocity {
            self.x += self.v * dt;
            let [pxx, pxv, pvv] = self.p;
            self.p = [
                pxx + 2.0 * dt * pxv + dt * dt * pvv + q * dt.powi(3) / 3.0,
                pxv + dt * pvv + q * dt * dt / 2.0,
                pvv + q * dt,
            ];
        } else {
            self.p[0] += q * dt;
        }
    }

    fn update(&mut self, ts: Micros, z: f64, r: f64) {
        if self.ts.is_none() {
            *self = Kalman { ts: Some(ts), x: z, v: 0.0, p: [r, 0.0, 1.0] };
            return;
        }
        let [pxx, pxv, pvv] = self.p;
        let s = pxx + r;
        let (kx, kv) = (pxx / s, pxv / s);
        let y = z - self.x;
        self.x += kx * y;
        self.v += kv * y;
        self.p = [(1.0 - kx) * pxx, (1.0 - kx) * pxv, pvv - kv * pxv];
        self.ts = Some(ts);
    }
}

/// Fused times remembered per group to recognise upstream copies.
const RECENT: usize = 8;

struct Group {
    plan: FusePlan,
    /// Times of the last fused readings this stage made.
    recent: std::collections::VecDeque<Micros>,
    channel: Arc<str>,
    unit: Option<Arc<str>>,
    source: Arc<str>,
    inputs: Vec<Input>,
    round_start: Option<Micros>,
    round_end: Micros,
    kalman: Kalman,
}

/// The fusion stage over every `fuse` group of a plan.
pub struct Fuser {
    groups: Vec<Group>,
    /// Input channel → its entry in `targets`.
    by_channel: FxHashMap<Arc<str>, usize>,
    /// Per input channel: (group, input) for every group using it.
    targets: Vec<Box<[(usize, usize)]>>,
    pub stats: FuseStats,
    scratch: Vec<(usize, f64)>,
    /// Values being sorted for a median (reused: no allocation per round).
    sorted: Vec<f64>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct FuseStats {
    pub fused: u64,
    pub voted_out: u64,
    pub suspect: u64,
}

impl Fuser {
    pub fn new(plans: &[FusePlan]) -> Fuser {
        let mut by_channel: FxHashMap<Arc<str>, Vec<(usize, usize)>> = FxHashMap::default();
        let groups = plans
            .iter()
            .enumerate()
            .map(|(g, p)| {
                let inputs = p
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let channel: Arc<str> = Arc::from(c.as_str());
                        by_channel.entry(channel.clone()).or_default().push((g, i));
                        Input {
                            channel,
                            latest: Latest::default(),
                            in_round: false,
                            variance: 1.0,
                            given_sigma: p.sigma.get(i).copied().flatten(),
                            voted_out_since: None,
                            suspect: false,
                        }
                    })
                    .collect();
                Group {
                    recent: std::collections::VecDeque::with_capacity(RECENT),
                    channel: Arc::from(p.channel.as_str()),
                    unit: p.unit.as_deref().map(Arc::from),
                    source: Arc::from("fuse"),
                    plan: p.clone(),
                    inputs,
                    round_start: None,
                    round_end: 0,
                    kalman: Kalman::default(),
                }
            })
            .collect();
        let mut targets = Vec::with_capacity(by_channel.len());
        let by_channel = by_channel
            .into_iter()
            .map(|(c, t)| {
                targets.push(t.into_boxed_slice());
                (c, targets.len() - 1)
            })
            .collect();
        Fuser { groups, by_channel, targets, stats: FuseStats::default(), scratch: Vec::new(), sorted: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// What outlives a round, per group: the Kalman filter, and per input its
    /// residual variance and how long it has been voted out. As JSON:
    /// `{channel: {method, kalman, inputs: {channel: {variance, voted_out_since, suspect}}}}`.
    pub fn save_state(&self) -> String {
        let doc: serde_json::Map<String, serde_json::Value> = self
            .groups
            .iter()
            .map(|g| {
                let inputs: serde_json::Map<String, serde_json::Value> = g
                    .inputs
                    .iter()
                    .map(|i| {
                        let v = serde_json::json!({
                            "variance": i.variance,
                            "voted_out_since": i.voted_out_since,
                            "suspect": i.suspect,
                        });
                        (i.channel.to_string(), v)
                    })
                    .collect();
                let v = serde_json::json!({"method": g.plan.method, "kalman": g.kalman, "inputs": inputs});
                (g.channel.to_string(), v)
            })
            .collect();
        serde_json::Value::Object(doc).to_string()
    }

    /// Continues from [`Fuser::save_state`]. A group whose method changed
    /// since starts afresh, as does an input that is new to its group.
    pub fn restore_state(&mut self, json: &str) {
        let Ok(serde_json::Value::Object(doc)) = serde_json::from_str::<serde_json::Value>(json) else {
            tracing::warn!("saved fusion state does not parse; starting afresh");
            return;
        };
        for g in &mut self.groups {
            let Some(saved) = doc.get(&*g.channel) else { continue };
            if saved["method"] != serde_json::json!(g.plan.method) {
                continue;
            }
            if let Ok(k) = serde_json::from_value::<Kalman>(saved["kalman"].clone()) {
                g.kalman = k;
            }
            for i in &mut g.inputs {
                let Some(s) = saved["inputs"].get(&*i.channel) else { continue };
                if let Some(v) = s["variance"].as_f64().filter(|v| v.is_finite() && *v > 0.0) {
                    i.variance = v;
                }
                i.voted_out_since = s["voted_out_since"].as_i64();
                i.suspect = s["suspect"].as_bool().unwrap_or(false);
            }
        }
    }

    /// Passes `batch` on into `out`, with fused readings added.
    pub fn process(&mut self, batch: Vec<Record>, out: &mut Vec<Record>) {
        // Every record passes through, plus about one fused per group round.
        out.reserve(batch.len() + batch.len() / 2);
        for mut rec in batch {
            let Record::Reading(r) = &mut rec else {
                out.push(rec);
                continue;
            };
            if r.fusion.is_some() && self.groups.iter().any(|g| g.channel == r.channel && g.recent.contains(&r.ts)) {
                continue; // made upstream, and made again here just now
            }
            let Some(&t) = self.by_channel.get(&r.channel) else {
                out.push(rec);
                continue;
            };
            let mut suspect = false;
            for &(g, i) in self.targets[t].iter() {
                suspect |= self.groups[g].inputs[i].suspect;
            }
            if suspect && r.quality == Quality::Good {
                r.quality = Quality::Suspect;
                r.flags.insert(Flags::VOTED_OUT);
            }
            let usable = r.quality != Quality::Bad && r.value.is_some_and(f64::is_finite);
            let latest = Latest { ts: r.ts, value: r.value, usable };
            for &(g, _) in self.targets[t].iter() {
                // No `unit` of its own: the fused channel takes its inputs'.
                let grp = &mut self.groups[g];
                if grp.unit.is_none() && grp.plan.unit.is_none() {
                    grp.unit.clone_from(&r.unit);
                }
            }
            out.push(rec);
            for k in 0..self.targets[t].len() {
                let (g, i) = self.targets[t][k];
                self.offer(g, i, latest, out);
            }
        }
    }

    /// Fuses rounds the wall clock has left behind (live runs).
    pub fn tick(&mut self, now: Micros, out: &mut Vec<Record>) {
        for g in 0..self.groups.len() {
            let grp = &self.groups[g];
            if grp.round_start.is_some_and(|s| now - s > grp.plan.window.as_micros() as i64) {
                self.fuse(g, out);
            }
        }
    }

    /// Fuses every open round (end of the input).
    pub fn flush(&mut self, out: &mut Vec<Record>) {
        for g in 0..self.groups.len() {
            if self.groups[g].round_start.is_some() {
                self.fuse(g, out);
            }
        }
    }

    /// Input `i` of group `g` reported `r`.
    fn offer(&mut self, g: usize, i: usize, r: Latest, out: &mut Vec<Record>) {
        let window = self.groups[g].plan.window.as_micros() as i64;
        let grp = &self.groups[g];
        let late = grp.round_start.is_some_and(|s| r.ts - s > window);
        if late || grp.inputs[i].in_round {
            self.fuse(g, out);
        }
        let grp = &mut self.groups[g];
        let input = &mut grp.inputs[i];
        // Out-of-order readings older than what we hold do not replace it.
        if r.ts >= input.latest.ts || !input.latest.usable {
            input.latest = r;
        }
        input.in_round = true;
        grp.round_start.get_or_insert(r.ts);
        grp.round_end = grp.round_end.max(r.ts);
        if grp.inputs.iter().all(|i| i.in_round) {
            self.fuse(g, out);
        }
    }

    fn fuse(&mut self, g: usize, out: &mut Vec<Record>) {
        let grp = &mut self.groups[g];
        let ts = grp.round_end;
        let window = grp.plan.window.as_micros() as i64;
        grp.round_start = None;
        for input in &mut grp.inputs {
            input.in_round = false;
        }
        // Candidates: usable latest values within the window.
        let cand = &mut self.scratch;
        cand.clear();
        for (i, input) in grp.inputs.iter().enumerate() {
            if input.latest.usable && ts - input.latest.ts <= window {
                if let Some(v) = input.latest.value {
                    cand.push((i, v));
                }
            }
        }
        let spread = match (cand.iter().map(|c| c.1).reduce(f64::min), cand.iter().map(|c| c.1).reduce(f64::max)) {
            (Some(lo), Some(hi)) => hi - lo,
            _ => 0.0,
        };
        let consensus = median_in(&mut self.sorted, cand.iter().map(|c| c.1));
        let mut voted_out = Vec::new();
        if let (Some(max), Some(m)) = (grp.plan.max_spread, consensus) {
            cand.retain(|&(i, v)| {
                let keep = (v - m).abs() <= max;
                if !keep {
                    voted_out.push(i);
                }
                keep
            });
        }
        // Voting history: how long has each input been out?
        let suspect_after = grp.plan.suspect_after.as_micros() as i64;
        for (i, input) in grp.inputs.iter_mut().enumerate() {
            if voted_out.contains(&i) {
                let since = *input.voted_out_since.get_or_insert(ts);
                input.suspect = ts - since >= suspect_after;
            } else if cand.iter().any(|c| c.0 == i) {
                input.voted_out_since = None;
                input.suspect = false;
            }
        }
        let value = match grp.plan.method {
            _ if cand.is_empty() => None,
            FuseMethod::Mean => Some(cand.iter().map(|c| c.1).sum::<f64>() / cand.len() as f64),
            // Nobody voted out: the median of the rest is the consensus.
            FuseMethod::Median if voted_out.is_empty() => consensus,
            FuseMethod::Median => median_in(&mut self.sorted, cand.iter().map(|c| c.1)),
            FuseMethod::Weighted => {
                let w = |i: usize| {
                    let inp = &grp.inputs[i];
                    1.0 / inp.given_sigma.map_or(inp.variance, |s| (s * s).max(MIN_VARIANCE))
                };
                let (num, den) = cand.iter().fold((0.0, 0.0), |(n, d), &(i, v)| (n + w(i) * v, d + w(i)));
                let fused = num / den;
                for &(i, v) in cand.iter() {
                    let inp = &mut grp.inputs[i];
                    if inp.given_sigma.is_none() && cand.len() > 1 {
                        let r2 = (v - fused) * (v - fused);
                        inp.variance = ((1.0 - SIGMA_ALPHA) * inp.variance + SIGMA_ALPHA * r2).max(MIN_VARIANCE);
                    }
                }
                Some(fused)
            }
            FuseMethod::Kalman => {
                let velocity = grp.plan.model == KalmanModel::Velocity;
                grp.kalman.predict(ts, grp.plan.process_noise, velocity);
                for &(_, v) in cand.iter() {
                    grp.kalman.update(ts, v, grp.plan.measurement_noise);
                }
                Some(grp.kalman.x)
            }
        };
        let quality = match cand.len() {
            0 => Quality::Bad,
            n if n < grp.plan.min_inputs => Quality::Suspect,
            _ => Quality::Good,
        };
        if grp.recent.len() == RECENT {
            grp.recent.pop_front();
        }
        grp.recent.push_back(ts);
        self.stats.fused += 1;
        self.stats.voted_out += voted_out.len() as u64;
        if quality != Quality::Good {
            self.stats.suspect += 1;
        }
        let name = |i: usize| grp.inputs[i].channel.clone();
        out.push(Record::Reading(Reading {
            ts,
            channel: grp.channel.clone(),
            value,
            text: None,
            unit: grp.unit.clone(),
            quality,
            flags: if quality == Quality::Good { Flags::empty() } else { Flags::from_name("suspect_input") },
            source: grp.source.clone(),
            from_input: false,
            fusion: Some(Box::new(Fusion {
                inputs: cand.iter().map(|c| name(c.0)).collect(),
                voted_out: voted_out.iter().map(|&i| name(i)).collect(),
                spread,
            })),
        }));
    }
}

/// The median of a few values (NaN-free), sorted in `buf`; None when there are none.
fn median_in(buf: &mut Vec<f64>, values: impl Iterator<Item = f64>) -> Option<f64> {
    buf.clear();
    buf.extend(values);
    if buf.is_empty() {
        return None;
    }
    buf.sort_unstable_by(f64::total_cmp);
    let n = buf.len();
    Some(if n % 2 == 1 { buf[n / 2] } else { (buf[n / 2 - 1] + buf[n / 2]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn plan(method: FuseMethod, max_spread: Option<f64>) -> FusePlan {
        FusePlan {
            channel: "t".into(),
            inputs: vec!["a".into(), "b".into(), "c".into()],
            method,
            window: Duration::from_secs(2),
            max_spread,
            min_inputs: 2,
            sigma: vec![None; 3],
            process_noise: 0.01,
            measurement_noise: 1.0,
            model: KalmanModel::Constant,
            suspect_after: Duration::from_secs(10),
            unit: None,
        }
    }

    fn reading(ch: &str, ts_s: i64, v: Option<f64>) -> Record {
        Reading::sample(ch, ts_s, v)
    }

    fn fused(out: &[Record]) -> Vec<&Reading> {
        out.iter()
            .filter_map(|r| match r {
                Record::Reading(r) if r.fusion.is_some() => Some(r),
                _ => None,
            })
            .collect()
    }

    fn run(f: &mut Fuser, rounds: &[[Option<f64>; 3]]) -> Vec<Record> {
        let mut out = Vec::new();
        for (k, vals) in rounds.iter().enumerate() {
            let batch = ["a", "b", "c"].iter().zip(vals).map(|(c, v)| reading(c, k as i64, *v)).collect();
            f.process(batch, &mut out);
        }
        f.flush(&mut out);
        out
    }

    #[test]
    fn a_restored_fuser_continues_its_kalman_estimate() {
        let rounds: Vec<[Option<f64>; 3]> = (0..20).map(|k| [Some(10.0 + k as f64 * 0.1); 3]).collect();
        let mut f = Fuser::new(&[plan(FuseMethod::Kalman, None)]);
        run(&mut f, &rounds);
        let saved = f.save_state();
        let mut g = Fuser::new(&[plan(FuseMethod::Kalman, None)]);
        g.restore_state(&saved);
        assert_eq!(g.save_state(), saved);
        // The next round continues from the estimate, not from scratch.
        let next = |f: &mut Fuser| {
            let mut out = Vec::new();
            let batch = ["a", "b", "c"].iter().map(|c| reading(c, 20, Some(20.0))).collect();
            f.process(batch, &mut out);
            f.flush(&mut out);
            fused(&out)[0].value.unwrap()
        };
        assert_eq!(next(&mut g), next(&mut f));
        assert_ne!(next(&mut Fuser::new(&[plan(FuseMethod::Kalman, None)])), next(&mut g));
        // Another method starts afresh.
        let mut m = Fuser::new(&[plan(FuseMethod::Median, None)]);
        m.restore_state(&saved);
        assert!(m.save_state().contains(r#""ts":null"#), "{}", m.save_state());
    }

    #[test]
    fn a_fused_channel_without_a_unit_takes_its_inputs_unit() {
        let with_unit = |ch: &str| {
            let mut r = reading(ch, 1, Some(5.0));
            if let Record::Reading(r) = &mut r {
                r.unit = Some(Arc::from("degC"));
            }
            r
        };
        let mut out = Vec::new();
        let mut f = Fuser::new(&[plan(FuseMethod::Median, None)]);
        f.process(["a", "b", "c"].iter().map(|c| with_unit(c)).collect(), &mut out);
        assert_eq!(fused(&out)[0].unit.as_deref(), Some("degC"));
        // A unit of its own wins.
        let mut own = plan(FuseMethod::Median, None);
        own.unit = Some("K".into());
        let mut out = Vec::new();
        Fuser::new(&[own]).process(["a", "b", "c"].iter().map(|c| with_unit(c)).collect(), &mut out);
        assert_eq!(fused(&out)[0].unit.as_deref(), Some("K"));
    }

    #[test]
    fn rounds_voting_and_quality() {
        let mut f = Fuser::new(&[plan(FuseMethod::Median, Some(2.0))]);
        let out = run(&mut f, &[[Some(10.0), Some(10.5), Some(30.0)], [Some(10.0), None, None], [None, None, None]]);
        let fr = fused(&out);
        assert_eq!(fr.len(), 3);
        let info = fr[0].fusion.as_ref().unwrap();
        assert_eq!(fr[0].value, Some(10.25));
        assert_eq!(&*info.voted_out[0], "c");
        assert_eq!(info.spread, 20.0);
        assert_eq!(fr[0].quality, Quality::Good);
        // One input left in the second round: suspect (min_inputs 2). The
        // stale values of b and c from round 0 are within the window but
        // b and c sent bad readings, which are not candidates.
        assert_eq!((fr[1].value, fr[1].quality), (Some(10.0), Quality::Suspect));
        assert_eq!((fr[2].value, fr[2].quality), (None, Quality::Bad));
    }

    #[test]
    fn a_sensor_out_for_long_is_marked_suspect_on_its_own_readings() {
        let mut f = Fuser::new(&[plan(FuseMethod::Mean, Some(1.0))]);
        let rounds: Vec<[Option<f64>; 3]> = (0..20).map(|_| [Some(5.0), Some(5.1), Some(9.0)]).collect();
        let out = run(&mut f, &rounds);
        let c: Vec<&Reading> = out
            .iter()
            .filter_map(|r| match r {
                Record::Reading(r) if &*r.channel == "c" => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(c[5].quality, Quality::Good);
        assert!(c[15].quality == Quality::Suspect && c[15].flags.contains(Flags::VOTED_OUT));
    }

    proptest! {
        /// The median of three ignores any one outlier.
        #[test]
        fn median_ignores_one_outlier(x in -1e6f64..1e6, d in 0.0f64..1.0, outlier in -1e12f64..1e12, pos in 0usize..3) {
            let mut vals = [Some(x), Some(x + d), Some(x + d / 2.0)];
            vals[pos] = Some(outlier);
            let mut f = Fuser::new(&[plan(FuseMethod::Median, None)]);
            let out = run(&mut f, &[vals]);
            let v = fused(&out)[0].value.unwrap();
            prop_assert!(v >= x - 1e-9 && v <= x + d + 1e-9, "{v} outside [{x}, {}]", x + d);
        }

        /// With equal sigmas the weighted mean is the mean.
        #[test]
        fn weighted_with_equal_sigmas_is_the_mean(a in -1e3f64..1e3, b in -1e3f64..1e3, c in -1e3f64..1e3, s in 0.01f64..10.0) {
            let mut p = plan(FuseMethod::Weighted, None);
            p.sigma = vec![Some(s); 3];
            let mut f = Fuser::new(&[p]);
            let out = run(&mut f, &[[Some(a), Some(b), Some(c)]]);
            let v = fused(&out)[0].value.unwrap();
            prop_assert!((v - (a + b + c) / 3.0).abs() < 1e-9);
        }

        /// The Kalman estimate of a constant converges to it, from any start.
        #[test]
        fn kalman_converges_to_a_constant(level in -1e3f64..1e3, start in -1e3f64..1e3, velocity in any::<bool>()) {
            let mut p = plan(FuseMethod::Kalman, None);
            if velocity {
                p.model = KalmanModel::Velocity;
            }
            let mut f = Fuser::new(&[p]);
            let mut rounds = vec![[Some(start), Some(start), Some(start)]];
            rounds.extend((0..200).map(|_| [Some(level), Some(level), Some(level)]));
            let out = run(&mut f, &rounds);
            let v = fused(&out).last().unwrap().value.unwrap();
            prop_assert!((v - level).abs() < 1e-2 * (1.0 + (start - level).abs()), "{v} vs {level}");
        }
    }
}
