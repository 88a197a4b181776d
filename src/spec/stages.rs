//! Specs of the processing stages: channels (validation), fuse, detect, alerts.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Metadata and validation rules of the channels a key matches.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// Engineering unit, added to readings that carry none.
    #[serde(default)]
    pub unit: Option<String>,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// `[low, high]`: values outside are `bad` with flag `out_of_range`.
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// Largest plausible change per time (`5/s`, `30/min`): faster changes are
    /// `suspect` with flag `rate`.
    #[serde(default)]
    pub max_rate: Option<String>,
    /// A value unchanged for this long (`5m`) is `suspect` with flag `stuck`.
    #[serde(default)]
    pub stuck: Option<String>,
    /// No reading for this long (`10s`) produces a `bad` reading with flag
    /// `stale` and value null, once per gap.
    #[serde(default)]
    pub stale: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FuseMethod {
    Mean,
    Median,
    /// Inverse-variance weighting.
    Weighted,
    /// A one-dimensional Kalman filter over all inputs.
    Kalman,
}

/// The motion model of a `kalman` fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KalmanModel {
    /// The quantity stays put between readings (process noise lets it drift).
    #[default]
    Constant,
    /// The quantity moves at a rate that the filter estimates too.
    Velocity,
}

/// A fused channel computed from redundant inputs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FuseSpec {
    /// Input channels.
    pub inputs: Vec<String>,
    /// `mean`, `median`, `weighted` or `kalman`.
    pub method: FuseMethod,
    /// Inputs older than this are left out (`2s`). Default 2 × the slowest source interval, at least 1s.
    #[serde(default)]
    pub window: Option<String>,
    /// Inputs farther than this from the consensus are voted out.
    #[serde(default)]
    pub max_spread: Option<f64>,
    /// Fewer inputs than this make the fused reading `suspect`. Default 1.
    #[serde(default)]
    pub min_inputs: Option<usize>,
    /// Standard deviation per input for `weighted` (estimated when left out).
    #[serde(default)]
    pub sigma: Option<IndexMap<String, f64>>,
    /// Kalman process noise (variance per second). Default 0.01.
    #[serde(default)]
    pub process_noise: Option<f64>,
    /// Kalman model: `constant` (default) or `velocity`.
    #[serde(default)]
    pub model: Option<KalmanModel>,
    /// Kalman measurement noise (variance). Default 1.
    #[serde(default)]
    pub measurement_noise: Option<f64>,
    /// A sensor voted out this long is flagged `suspect` on its own readings. Default 1m.
    #[serde(default)]
    pub suspect_after: Option<String>,
    /// Engineering unit of the fused channel. Default: the inputs'.
    #[serde(default)]
    pub unit: Option<String>,
}

/// The width of a counter, where it wraps around to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CounterWidth {
    /// Wraps after 65535.
    U16,
    /// Wraps after 4294967295.
    U32,
    /// Wraps after 18446744073709551615.
    U64,
}

impl CounterWidth {
    /// The number of values: the counter goes from this − 1 back to 0.
    pub fn modulus(self) -> f64 {
        match self {
            CounterWidth::U16 => 65_536.0,
            CounterWidth::U32 => 4_294_967_296.0,
            CounterWidth::U64 => 18_446_744_073_709_551_616.0,
        }
    }
}

/// What a `rolling` computed channel keeps of its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RollingStat {
    Min,
    Max,
    /// The mean.
    Avg,
    /// The sample standard deviation (0 with one value).
    Stddev,
}

/// A computed channel: a new channel derived from others. Give exactly one
/// of `expr`, `rate`, `integrate`, `delta` and `rolling`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeSpec {
    /// An expression over the latest values of channels:
    /// `pump.power / pump.flow`, `max(a.temp, b.temp) - 2`. Operators
    /// `+ - * / ^`, comparisons (1 or 0), parentheses, numbers, channel
    /// names (dotted, or in backticks), and the functions `min`, `max`,
    /// `abs`, `sqrt`, `exp`, `ln`, `log10`, `floor`, `ceil`, `round`,
    /// `clamp(x, low, high)`, `if(condition, then, else)`. Evaluated when
    /// every input has reported at a time, or when a later reading arrives
    /// (or on `every`).
    #[serde(default)]
    pub expr: Option<String>,
    /// A counter channel whose rate of change this is, per `per`.
    #[serde(default)]
    pub rate: Option<String>,
    /// A channel integrated over time (trapezoids), per `per`: kW with
    /// `per: 1h` gives kWh.
    #[serde(default)]
    pub integrate: Option<String>,
    /// A channel whose change over each `every` this is (stamped at the
    /// interval's end).
    #[serde(default)]
    pub delta: Option<String>,
    /// A channel whose `stat` over the last `window` this is.
    #[serde(default)]
    pub rolling: Option<String>,
    /// `rate`, `delta`: the counter's width (`u16`, `u32`, `u64`). A
    /// decrease whose wrapped-around step is under a quarter of the range is
    /// a wrap; any other decrease is a reset (flag `reset`). Default: no
    /// width, every decrease is a reset.
    #[serde(default)]
    pub counter: Option<CounterWidth>,
    /// `rate`, `integrate`: the time unit (`1s`, `1min`, `1h`). Default 1s.
    #[serde(default)]
    pub per: Option<String>,
    /// `expr`: an input older than this at evaluation makes the value `bad`
    /// (flag `bad_input`). Default 1m.
    #[serde(default)]
    pub max_age: Option<String>,
    /// `integrate`: a gap between readings longer than this is not bridged
    /// (the next value is `suspect`, flag `gap`). Default 1m.
    #[serde(default)]
    pub max_gap: Option<String>,
    /// `delta`: the interval (required). `expr`: evaluate at every multiple
    /// of this instead of when an input changes.
    #[serde(default)]
    pub every: Option<String>,
    /// `rolling`: how far back (required).
    #[serde(default)]
    pub window: Option<String>,
    /// `rolling`: `min`, `max`, `avg` or `stddev` (required).
    #[serde(default)]
    pub stat: Option<RollingStat>,
    /// Engineering unit of the computed channel. Checked against what the
    /// expression gives where that is known. Default: the expression's, or
    /// the input's for `delta` and `rolling`.
    #[serde(default)]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DetectMethod {
    /// Rolling z-score over `window`; anomaly when |z| > `threshold`.
    Zscore,
    /// Exponentially weighted moving average control chart (`alpha`, `threshold` in sigmas).
    Ewma,
    /// Median absolute deviation over `window` (robust z-score).
    Mad,
    /// Rate of change above `max_rate`.
    Rate,
    /// No change beyond `tolerance` for `for`.
    Flatline,
    /// Isolation forest over each reading's value, its distance from the mean
    /// of `window` and its step from the previous reading; trained on the
    /// first 512 readings or on `warmup` (and first on the store's history);
    /// `threshold` is the isolation score (0.75); `trees` (100), `seed` (0).
    Iforest,
    /// A sequence of conditions (`steps`) in order within `within`.
    Pattern,
}

impl DetectMethod {
    /// The name the spec and the anomaly records use.
    pub fn name(self) -> &'static str {
        match self {
            DetectMethod::Zscore => "zscore",
            DetectMethod::Ewma => "ewma",
            DetectMethod::Mad => "mad",
            DetectMethod::Rate => "rate",
            DetectMethod::Flatline => "flatline",
            DetectMethod::Iforest => "iforest",
            DetectMethod::Pattern => "pattern",
        }
    }
}

/// An anomaly detector over the channels that `channel` matches.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectSpec {
    /// Channel name or glob; each matching channel has its own state.
    pub channel: String,
    /// The method.
    pub method: DetectMethod,
    /// Rolling window (zscore, mad, iforest).
    #[serde(default)]
    pub window: Option<String>,
    /// Score above which a reading is anomalous.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Smoothing factor of `ewma`, in (0, 1].
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Largest change that counts as no change (flatline).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// How long a flatline must last.
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
    /// Largest rate of change (`rate`), as `5/s`.
    #[serde(default)]
    pub max_rate: Option<String>,
    /// Number of trees (iforest), 1 to 1000. Default 100; each costs about 2.5 kB
    /// per channel and 20–40 ns per reading.
    #[serde(default)]
    pub trees: Option<usize>,
    /// Training period before the detector reports (`1h`); for `iforest`, the
    /// readings it is trained on (a reservoir sample of 512).
    #[serde(default)]
    pub warmup: Option<String>,
    /// Random seed (iforest).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Conditions (minijinja expressions over a record) that must occur in order (pattern).
    #[serde(default)]
    pub steps: Option<Vec<String>>,
    /// Time window of a pattern.
    #[serde(default)]
    pub within: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    Info,
    #[default]
    Warning,
    Critical,
}

/// An alert rule.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// A minijinja expression over a record: `channel == 'boiler.temp' and value > 95`.
    /// For a `relay` rule, over an alert record: `severity == 'critical'`.
    pub when: String,
    /// Route alert records that come in — a fleet's, from a `nats` source, or
    /// `--input` — instead of watching readings and anomalies: each incoming
    /// alert for which `when` holds goes to `notify` as the gateway made it
    /// (its title and body, unless this rule gives its own; its fingerprint
    /// taken over the channel as named here, so gateways do not collide).
    /// `for`, `repeat` and `resolve` do not apply: the gateway's rule decided.
    #[serde(default)]
    pub relay: bool,
    /// The condition must hold this long before the alert fires.
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default)]
    pub severity: AlertSeverity,
    /// Notify again at this interval while firing. Default: once.
    #[serde(default)]
    pub repeat: Option<String>,
    /// Notify when the condition clears. Default true.
    #[serde(default)]
    pub resolve: Option<bool>,
    /// Notifier ids.
    #[serde(default)]
    pub notify: Vec<String>,
    /// Title template. Default `{{ rule }} {{ state }}: {{ channel }} = {{ value }}`
    /// (`over: sources`: `{{ rule }} {{ state }}: source {{ source }}`).
    #[serde(default)]
    pub title: Option<String>,
    /// Body template.
    #[serde(default)]
    pub body: Option<String>,
    /// Extra labels, available to templates as `labels`.
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// `channels` (default: readings and anomalies) or `sources` (whether
    /// each source answers: `when: down`).
    #[serde(default)]
    pub over: super::AlertOver,
    /// Once firing, the alert resolves when this expression holds (not when
    /// `when` stops holding): `value < 90` for `when: value > 95`, so a
    /// value hovering at the threshold does not flap.
    #[serde(default)]
    pub resolve_when: Option<String>,
    /// Report an alert that fires and resolves too often once, as `flapping`.
    #[serde(default)]
    pub flapping: Option<super::FlappingSpec>,
    /// While this rule fires, hold the notifications of other rules.
    #[serde(default)]
    pub inhibit: Option<super::InhibitSpec>,
    /// Send this rule's notifications in groups (overrides its notifiers' `group`).
    #[serde(default)]
    pub group: Option<super::GroupSpec>,
    /// Recurring windows in which this rule's notifications are held.
    #[serde(default)]
    pub mute: Vec<super::MuteWindowSpec>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string a schema allows (`const` and `enum` values), in order.
    fn allowed(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(c) = m.get("const").and_then(|c| c.as_str()) {
                    out.push(c.to_string());
                }
                if let Some(serde_json::Value::Array(e)) = m.get("enum") {
                    out.extend(e.iter().filter_map(|x| x.as_str().map(String::from)));
                }
                for (k, x) in m {
                    if k != "enum" && k != "const" {
                        allowed(x, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| allowed(x, out)),
            _ => {}
        }
    }

    #[test]
    fn method_names_are_serdes_own() {
        let schema = serde_json::to_value(schemars::schema_for!(DetectMethod)).unwrap();
        let mut names = Vec::new();
        allowed(&schema, &mut names);
        assert!(names.len() > 1, "{names:?}");
        for n in names {
            let m: DetectMethod = serde_json::from_value(serde_json::Value::String(n.clone())).unwrap();
            assert_eq!(m.name(), n);
        }
    }
}
