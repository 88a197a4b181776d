//! Channel validation: range, rate, stuck and stale checks per channel.
//!
//! Plain synchronous code over batches. Each channel resolves its rule once
//! (exact name first, then the first glob in spec order) and keeps a small
//! state; the number of channels with state is capped so hostile input cannot
//! grow it without bound.
//!
//! Stale detection runs on data time: the newest timestamp seen (the
//! watermark) — or the wall clock for live sources — minus a channel's last
//! reading. A gap produces one `bad` reading with flag `stale` and a null
//! value, stamped at the moment the channel became stale.

use std::collections::HashMap;
use std::sync::Arc;

use globset::GlobMatcher;

use crate::compile::ChannelRule;
use crate::model::channel::channel_matcher;
use crate::model::intern::FxHashMap;
use crate::model::record::{Flags, Quality, Reading, Record};
use crate::model::time::Micros;

/// Most channels whose state is remembered.
pub const MAX_CHANNELS: usize = 100_000;
/// Readings stamped further than this ahead of the wall clock are checked
/// without touching channel state: one reading from a device with a wrong
/// clock must not disable rate, stuck and stale checks for the rest of time.
pub const MAX_CLOCK_SKEW_US: i64 = 5 * 60 * 1_000_000;

struct Rule {
    plan: ChannelRule,
    unit: Option<Arc<str>>,
    stale_us: Option<i64>,
    stuck_us: Option<i64>,
}

#[derive(Debug, Clone)]
struct ChannelState {
    rule: Option<u32>,
    last_ts: Micros,
    last_value: Option<f64>,
    /// Time of `last_value` (bad readings without a value move `last_ts` only).
    last_value_ts: Micros,
    stuck_since: Micros,
    stuck_value: Option<f64>,
    stale_reported: bool,
    source: Arc<str>,
}

/// Counts of what validation did, for the run summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct ValidateStats {
    pub readings: u64,
    pub suspect: u64,
    pub bad: u64,
    pub stale_gaps: u64,
}

pub struct ChannelValidator {
    rules: Vec<Rule>,
    exact: HashMap<String, u32>,
    globs: Vec<(u32, GlobMatcher)>,
    states: FxHashMap<Arc<str>, ChannelState>,
    /// Channels with a `stale` rule, for the watermark scan.
    stale_watch: Vec<Arc<str>>,
    watermark: Micros,
    /// A later stage of a pipe: readings were judged upstream, where silent
    /// channels were looked for; no watermark scan here.
    downstream: bool,
    pub stats: ValidateStats,
}

impl ChannelValidator {
    pub fn new(rules: &[ChannelRule]) -> Self {
        let mut exact = HashMap::new();
        let mut globs = Vec::new();
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            if r.is_glob {
                if let Ok(m) = channel_matcher(&r.pattern) {
                    globs.push((i, m));
                }
            } else {
                exact.insert(r.pattern.clone(), i);
            }
            out.push(Rule {
                plan: r.clone(),
                unit: r.unit.as_deref().map(Arc::from),
                stale_us: r.stale.map(|d| d.as_micros() as i64),
                stuck_us: r.stuck.map(|d| d.as_micros() as i64),
            });
        }
        ChannelValidator {
            rules: out,
            exact,
            globs,
            states: FxHashMap::default(),
            stale_watch: Vec::new(),
            watermark: i64::MIN,
            downstream: false,
            stats: ValidateStats::default(),
        }
    }

    fn rule_for(&self, channel: &str) -> Option<u32> {
        self.exact
            .get(channel)
            .copied()
            .or_else(|| self.globs.iter().find(|(_, m)| m.is_match(channel)).map(|(i, _)| *i))
    }

    /// Validates the readings of `batch` in place, and appends to `out` the
    /// batch with stale-gap readings inserted where gaps were found.
    pub fn process(&mut self, batch: Vec<Record>, out: &mut Vec<Record>) {
        out.reserve(batch.len());
        let horizon = crate::model::time::now_micros() + MAX_CLOCK_SKEW_US;
        for mut rec in batch {
            if let Record::Reading(r) = &mut rec {
                if r.ts > horizon {
                    if let Some(i) = self.rule_for(&r.channel) {
                        apply_stateless(&self.rules[i as usize], r);
                    }
                    self.count(r.quality);
                    out.push(rec);
                    continue;
                }
                if let Some(gap) = self.check(r) {
                    out.push(Record::Reading(gap));
                }
                self.count(r.quality);
            }
            out.push(rec);
        }
        if !self.stale_watch.is_empty() && !self.downstream {
            self.scan_stale(self.watermark, out);
        }
    }

    /// Readings come from an upstream stage of a pipe, which validated them
    /// and looked for silent channels. The channel rules still apply (they
    /// change nothing on a reading already judged by the same rules), but
    /// the stale gaps are the upstream's: none is looked for by the
    /// watermark here, and a gap reading that comes in counts as reported.
    pub fn judged_upstream(&mut self) {
        self.downstream = true;
    }

    /// Live runs: channels named exactly in a rule with `stale` are expected
    /// from `now` on, so one that never reports is reported stale too.
    pub fn expect_named_channels(&mut self, now: Micros) {
        for (name, &i) in &self.exact {
            if self.rules[i as usize].stale_us.is_none() || self.states.contains_key(name.as_str()) {
                continue;
            }
            let channel: Arc<str> = Arc::from(name.as_str());
            self.stale_watch.push(channel.clone());
            self.states.insert(
                channel,
                ChannelState {
                    rule: Some(i),
                    last_ts: now,
                    last_value: None,
                    last_value_ts: now,
                    stuck_since: now,
                    stuck_value: None,
                    stale_reported: false,
                    source: Arc::from("validate"),
                },
            );
        }
    }

    /// Live sources: advance time with the wall clock so silent channels are
    /// reported stale even when nothing else arrives.
    pub fn tick(&mut self, now: Micros, out: &mut Vec<Record>) {
        if !self.stale_watch.is_empty() {
            self.scan_stale(now.max(self.watermark), out);
        }
    }

    fn count(&mut self, q: Quality) {
        self.stats.readings += 1;
        match q {
            Quality::Good => {}
            Quality::Suspect => self.stats.suspect += 1,
            Quality::Bad => self.stats.bad += 1,
        }
    }

    fn scan_stale(&mut self, now: Micros, out: &mut Vec<Record>) {
        for ch in &self.stale_watch {
            let Some(st) = self.states.get_mut(ch) else { continue };
            let Some(stale) = st.rule.and_then(|i| self.rules[i as usize].stale_us) else { continue };
            if !st.stale_reported && now - st.last_ts > stale {
                st.stale_reported = true;
                let unit = st.rule.and_then(|i| self.rules[i as usize].unit.clone());
                out.push(Record::Reading(gap_reading(ch.clone(), st.last_ts + stale, unit, st.source.clone())));
                self.stats.stale_gaps += 1;
                self.stats.readings += 1;
                self.stats.bad += 1;
            }
        }
    }

    /// Checks one reading; returns a stale-gap reading to insert before it.
    fn check(&mut self, r: &mut Reading) -> Option<Reading> {
        if r.ts > self.watermark {
            self.watermark = r.ts;
        }
        if let Some(v) = r.value {
            if !v.is_finite() {
                r.value = None;
                r.quality = Quality::Bad;
                r.flags.insert(Flags::INVALID);
            }
        }
        // A stale gap an upstream stage of a pipe reported (see `judged_upstream`).
        let upstream_gap = self.downstream && r.from_input && r.value.is_none() && r.flags.contains(Flags::STALE);
        let mut first_seen = false;
        let st = match self.states.get_mut(&r.channel) {
            Some(st) => st,
            None => {
                first_seen = true;
                let rule = self.rule_for(&r.channel);
                if self.states.len() >= MAX_CHANNELS {
                    // Over the cap: stateless checks only.
                    if let Some(i) = rule {
                        apply_stateless(&self.rules[i as usize], r);
                    }
                    return None;
                }
                if rule.is_some_and(|i| self.rules[i as usize].stale_us.is_some()) {
                    self.stale_watch.push(r.channel.clone());
                }
                self.states.insert(
                    r.channel.clone(),
                    ChannelState {
                        rule,
                        last_ts: r.ts,
                        last_value: None,
                        last_value_ts: r.ts,
                        stuck_since: r.ts,
                        stuck_value: None,
                        stale_reported: false,
                        source: r.source.clone(),
                    },
                );
                self.states.get_mut(&r.channel).expect("just inserted")
            }
        };
        let Some(ri) = st.rule else {
            st.last_ts = st.last_ts.max(r.ts);
            return None;
        };
        if upstream_gap {
            // The channel is known to be silent since its last reading, as
            // if this stage had said so: upstream stamped the gap `stale`
            // after it (a channel first seen here was last heard then).
            let rule = &self.rules[ri as usize];
            apply_stateless(rule, r);
            if first_seen {
                st.last_ts = r.ts - rule.stale_us.unwrap_or(0);
            }
            if r.ts > st.last_ts {
                st.stale_reported = true;
                self.stats.stale_gaps += 1;
            }
            return None;
        }
        let rule = &self.rules[ri as usize];
        apply_stateless(rule, r);

        let mut gap = None;
        if let Some(stale) = rule.stale_us {
            if !st.stale_reported && r.ts - st.last_ts > stale {
                gap = Some(gap_reading(r.channel.clone(), st.last_ts + stale, rule.unit.clone(), st.source.clone()));
                self.stats.stale_gaps += 1;
                self.stats.readings += 1;
                self.stats.bad += 1;
            }
        }
        if r.ts >= st.last_ts {
            if let Some(v) = r.value {
                if let (Some(max_rate), Some(prev)) = (rule.plan.max_rate, st.last_value) {
                    let dt = (r.ts - st.last_value_ts) as f64 / 1e6;
                    if dt > 0.0 && (v - prev).abs() / dt > max_rate {
                        r.quality = r.quality.max(Quality::Suspect);
                        r.flags.insert(Flags::RATE);
                    }
                }
                if let Some(stuck) = rule.stuck_us {
                    if st.stuck_value == Some(v) {
                        if r.ts - st.stuck_since >= stuck {
                            r.quality = r.quality.max(Quality::Suspect);
                            r.flags.insert(Flags::STUCK);
                        }
                    } else {
                        st.stuck_value = Some(v);
                        st.stuck_since = r.ts;
                    }
                }
                st.last_value = Some(v);
                st.last_value_ts = r.ts;
            }
            st.last_ts = r.ts;
            st.stale_reported = false;
        }
        st.source = r.source.clone();
        gap
    }
}

/// What is kept of a channel between runs (`state` table, component `validate`).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedChannel {
    ts: Micros,
    value: Option<f64>,
    #[serde(default)]
    value_ts: Option<Micros>,
    stuck_since: Micros,
    stuck_value: Option<f64>,
    stale: bool,
    source: String,
}

impl ChannelValidator {
    /// The per-channel state as JSON, so the next run continues where this
    /// one stopped (`--once` under cron behaves like a long run).
    pub fn save_state(&self) -> String {
        let map: std::collections::BTreeMap<&str, SavedChannel> = self
            .states
            .iter()
            .map(|(ch, st)| {
                (
                    &**ch,
                    SavedChannel {
                        ts: st.last_ts,
                        value: st.last_value,
                        value_ts: Some(st.last_value_ts),
                        stuck_since: st.stuck_since,
                        stuck_value: st.stuck_value,
                        stale: st.stale_reported,
                        source: st.source.to_string(),
                    },
                )
            })
            .collect();
        serde_json::to_string(&map).unwrap_or_default()
    }

    /// Restores what [`save_state`](Self::save_state) wrote. Rules are
    /// resolved again, so a changed spec applies at once; unreadable state is
    /// ignored (it is a cache of the past, not data).
    pub fn restore_state(&mut self, json: &str) {
        let Ok(map) = serde_json::from_str::<std::collections::BTreeMap<String, SavedChannel>>(json) else {
            tracing::warn!("ignoring unreadable channel state in the store");
            return;
        };
        let horizon = crate::model::time::now_micros() + MAX_CLOCK_SKEW_US;
        for (ch, saved) in map.into_iter().take(MAX_CHANNELS) {
            if crate::model::channel::check_channel_name(&ch).is_err() || saved.ts > horizon {
                continue;
            }
            let channel: Arc<str> = Arc::from(ch.as_str());
            let rule = self.rule_for(&ch);
            if rule.is_some_and(|i| self.rules[i as usize].stale_us.is_some()) {
                self.stale_watch.push(channel.clone());
            }
            self.states.insert(
                channel,
                ChannelState {
                    rule,
                    last_ts: saved.ts,
                    last_value: saved.value,
                    last_value_ts: saved.value_ts.unwrap_or(saved.ts),
                    stuck_since: saved.stuck_since,
                    stuck_value: saved.stuck_value,
                    stale_reported: saved.stale,
                    source: Arc::from(saved.source.as_str()),
                },
            );
        }
    }
}

fn apply_stateless(rule: &Rule, r: &mut Reading) {
    if r.unit.is_none() {
        r.unit = rule.unit.clone();
    }
    if let (Some(v), Some((lo, hi))) = (r.value, rule.plan.range) {
        if v < lo || v > hi {
            r.quality = Quality::Bad;
            r.flags.insert(Flags::OUT_OF_RANGE);
        }
    }
}

fn gap_reading(channel: Arc<str>, ts: Micros, unit: Option<Arc<str>>, source: Arc<str>) -> Reading {
    Reading {
        ts,
        channel,
        value: None,
        text: None,
        unit,
        quality: Quality::Bad,
        flags: Flags::STALE,
        source,
        from_input: false,
        fusion: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rule(pattern: &str) -> ChannelRule {
        ChannelRule {
            pattern: pattern.into(),
            is_glob: crate::model::channel::is_glob(pattern),
            unit: Some("degC".into()),
            range: Some((0.0, 100.0)),
            max_rate: Some(5.0),
            stuck: Some(Duration::from_secs(3)),
            stale: Some(Duration::from_secs(10)),
        }
    }

    fn reading(ts_s: i64, v: Option<f64>) -> Record {
        // Good even without a value: the validator decides.
        match Reading::sample("boiler.temp.a", ts_s, v) {
            Record::Reading(r) => Record::Reading(Reading { quality: Quality::Good, ..r }),
            other => other,
        }
    }

    fn run(v: &mut ChannelValidator, recs: Vec<Record>) -> Vec<Reading> {
        let mut out = Vec::new();
        v.process(recs, &mut out);
        out.into_iter().filter_map(|r| if let Record::Reading(r) = r { Some(r) } else { None }).collect()
    }

    #[test]
    fn range_rate_stuck_and_stale() {
        let mut v = ChannelValidator::new(&[rule("boiler.temp*")]);
        let out = run(
            &mut v,
            vec![reading(0, Some(50.0)), reading(1, Some(51.0)), reading(2, Some(70.0)), reading(3, Some(150.0))],
        );
        assert_eq!(out[0].unit.as_deref(), Some("degC"));
        assert_eq!(out[1].quality, Quality::Good);
        assert!(out[2].flags.contains(Flags::RATE) && out[2].quality == Quality::Suspect);
        assert!(out[3].flags.contains(Flags::OUT_OF_RANGE) && out[3].quality == Quality::Bad);

        let out = run(&mut v, (4..9).map(|s| reading(s, Some(42.0))).collect());
        let stuck: Vec<bool> = out.iter().map(|r| r.flags.contains(Flags::STUCK)).collect();
        assert_eq!(stuck, vec![false, false, false, true, true]);

        // A 20 s silence: one stale reading at last_ts + 10 s, before the next value.
        let out = run(&mut v, vec![reading(28, Some(42.5))]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].ts, out[0].value, out[0].quality), (18_000_000, None, Quality::Bad));
        assert!(out[0].flags.contains(Flags::STALE));
    }

    /// A later stage of a pipe: the gaps upstream reported are the gaps; it
    /// reports none of its own for them, seen before or not.
    #[test]
    fn downstream_takes_upstream_gaps_as_reported() {
        let mut up = ChannelValidator::new(&[rule("boiler.temp*")]);
        let upstream = run(&mut up, vec![reading(0, Some(42.0)), reading(28, Some(42.5))]);
        assert_eq!(upstream.iter().filter(|r| r.flags.contains(Flags::STALE)).count(), 1);
        let from_input = |rs: &[Reading]| -> Vec<Record> {
            rs.iter().map(|r| Record::Reading(Reading { from_input: true, ..r.clone() })).collect()
        };
        let mut down = ChannelValidator::new(&[rule("boiler.temp*")]);
        down.judged_upstream();
        let out = run(&mut down, from_input(&upstream));
        assert_eq!(out, upstream.iter().map(|r| Reading { from_input: true, ..r.clone() }).collect::<Vec<_>>());
        // A channel whose first record downstream is upstream's gap (a named
        // channel that never spoke, reported stale by a live acquire).
        let mut down = ChannelValidator::new(&[rule("boiler.temp*")]);
        down.judged_upstream();
        let out = run(&mut down, from_input(&upstream[1..]));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(down.stats.stale_gaps, 1);
    }

    #[test]
    fn watermark_reports_silent_channels_once() {
        let mut v = ChannelValidator::new(&[rule("boiler.temp*")]);
        let other = |ts: i64| {
            Record::Reading(Reading {
                channel: Arc::from("other"),
                ..match reading(ts, Some(1.0)) {
                    Record::Reading(r) => r,
                    _ => unreachable!(),
                }
            })
        };
        let out = run(&mut v, vec![reading(0, Some(1.0)), other(5), other(11), other(30)]);
        let stale: Vec<_> = out.iter().filter(|r| r.flags.contains(Flags::STALE)).collect();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].ts, 10_000_000);
    }

    #[test]
    fn rate_is_measured_from_the_last_value_and_future_times_do_not_stick() {
        let mut v = ChannelValidator::new(&[rule("boiler.temp*")]);
        // 50 at t=0, a timeout at t=10, then 60 at t=11: 10 in 11 s is below 5/s.
        let out = run(&mut v, vec![reading(0, Some(50.0)), reading(10, None), reading(11, Some(60.0))]);
        assert!(!out[2].flags.contains(Flags::RATE));
        // A reading from a clock a year ahead is checked but leaves state alone.
        let future = crate::model::time::now_micros() / 1_000_000 + 365 * 86_400;
        let out = run(&mut v, vec![reading(future, Some(200.0)), reading(12, Some(61.0))]);
        assert!(out[0].flags.contains(Flags::OUT_OF_RANGE));
        assert_eq!(out.iter().filter(|r| r.flags.contains(Flags::STALE)).count(), 0);
        assert_eq!(out[1].quality, Quality::Good);
    }

    #[test]
    fn state_carries_over_between_runs() {
        let mut one = ChannelValidator::new(&[rule("boiler.temp*")]);
        run(&mut one, (0..3).map(|s| reading(s, Some(42.0))).collect());
        let saved = one.save_state();
        let mut two = ChannelValidator::new(&[rule("boiler.temp*")]);
        two.restore_state(&saved);
        // Still 42 two seconds later: stuck since t=0 for 3 s, as in one run.
        let out = run(&mut two, vec![reading(3, Some(42.0)), reading(4, Some(70.0))]);
        assert!(out[0].flags.contains(Flags::STUCK));
        assert!(out[1].flags.contains(Flags::RATE));
        two.restore_state("not json");
    }

    #[test]
    fn exact_names_win_over_globs_and_nan_is_bad() {
        let mut exact = rule("boiler.temp.a");
        exact.range = Some((0.0, 10.0));
        let mut v = ChannelValidator::new(&[rule("boiler.*"), exact]);
        let out = run(&mut v, vec![reading(0, Some(50.0)), reading(1, Some(f64::NAN))]);
        assert!(out[0].flags.contains(Flags::OUT_OF_RANGE));
        assert_eq!((out[1].value, out[1].quality), (None, Quality::Bad));
    }
}
