//! A pipeline's test file, `plant.test.yaml` beside `plant.yaml`: raw types
//! that mirror the YAML, and the tree → [`TestFileSpec`] step.
//!
//! Tests live in a file of their own rather than in a `tests:` section of
//! the spec: the spec is what a gateway deploys and reloads, the tests are
//! what CI runs; one spec can have several test files, and a test fixture
//! never ships to a device. `validate` checks a test file like a spec
//! (strict keys, positions, codes, did-you-mean), and `compile::pipetest`
//! turns it into checked tests against the spec's plan.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::diag::{did_you_mean, Code, Diagnostic};
use super::load::{deserialize_at, join_key, NodeValue, SpecDoc};

/// The tests of one pipeline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "edgeguard pipeline tests")]
pub struct TestFileSpec {
    /// Test file format version. Only `1` exists.
    pub version: u32,
    /// The pipeline under test, relative to this file. Default: this file's
    /// name without `.test` (`plant.test.yaml` tests `plant.yaml`).
    #[serde(default)]
    pub spec: Option<String>,
    /// The tests, by name. Each runs on its own, in fresh state, on a
    /// virtual clock that starts at 2026-01-01T00:00:00Z (time `0s`).
    #[serde(default)]
    pub tests: IndexMap<String, TestSpec>,
}

/// One test: an input on the virtual clock, and what must happen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Spec values overridden for this test, like `--set`: a map from key
    /// path to value (`"alerts.boiler-overheat.for": 10s`).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, serde_json::Value>")]
    pub set: IndexMap<String, serde_json::Value>,
    /// Readings per channel, in the series notation: `80x30 96+0.5x20 _x5
    /// bad timeout stale`, one sample every `interval` from time 0. `VxN`
    /// is N+1 samples of V; `V+DxN` (or `V-DxN`) N+1 samples from V in steps
    /// of D; `_` no sample, `bad` a failed read (no value), `timeout` a
    /// failed read flagged `timeout`, each with an optional `xN` (N samples);
    /// `stale` ends the series: the channel is silent from then on.
    #[serde(default)]
    pub series: IndexMap<String, SeriesSpec>,
    /// Time between two samples of `series`. Default 1s.
    #[serde(default)]
    pub interval: Option<String>,
    /// An NDJSON fixture of readings and anomalies (relative to this file),
    /// instead of `series`; times in expectations count from its first record.
    #[serde(default)]
    pub file: Option<String>,
    /// Run the spec's own `simulate` sources for this long (`1h`), instead of `series`.
    #[serde(default)]
    pub simulate: Option<String>,
    /// How long the virtual clock runs (silent channels turn stale, rules
    /// resolve). Default: until the input ends.
    #[serde(default)]
    pub duration: Option<String>,
    /// Silences in effect during the test.
    #[serde(default)]
    pub silences: Vec<TestSilenceSpec>,
    /// What must happen, each expectation at a time or within a window.
    #[serde(default)]
    pub expect: Vec<ExpectSpec>,
}

/// One channel's series: the notation, or one number (a single sample).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SeriesSpec {
    Text(String),
    Number(f64),
}

impl SeriesSpec {
    pub fn text(&self) -> String {
        match self {
            SeriesSpec::Text(t) => t.clone(),
            SeriesSpec::Number(n) => n.to_string(),
        }
    }
}

/// A silence during a test.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSilenceSpec {
    /// The rule silenced.
    pub rule: String,
    /// Only on this channel (a name or glob). Default: every channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// Until this time of the test (`10m`).
    pub until: String,
}

/// One expectation: exactly one of `reading`, `fused`, `anomaly`,
/// `no_anomaly`, `alert`, `no_alert`, `notification`, with `at` (and
/// `within`) or `between`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// A channel's reading: the last one at or before `at` (every one
    /// `between` two times) has this `quality`, these `flags`, this `value`.
    #[serde(default)]
    pub reading: Option<String>,
    /// A fused channel's reading, like `reading` (`voted_out` lists the inputs voted out).
    #[serde(default)]
    pub fused: Option<String>,
    /// An anomaly on this channel (a `detector`'s, if given) at `at` ± `within`, or `between`.
    #[serde(default)]
    pub anomaly: Option<String>,
    /// No anomaly on this channel (of `detector`, if given) `between` two times.
    #[serde(default)]
    pub no_anomaly: Option<String>,
    /// An alert rule's transition (`state`: pending, firing, resolved) at `at` ± `within`, or `between`.
    #[serde(default)]
    pub alert: Option<String>,
    /// No transition of this rule (to `state`, if given) `between` two times.
    #[serde(default)]
    pub no_alert: Option<String>,
    /// What this notifier is given to send (nothing is sent: notifiers are
    /// captured), rendered exactly as `alert --render` renders it.
    #[serde(default)]
    pub notification: Option<String>,
    /// The time of the test (`12m`, `1h30m`, `0s`).
    #[serde(default)]
    pub at: Option<String>,
    /// With `at`: how far from it the record may be. Default 0s (readings:
    /// the last one at or before `at`, however old).
    #[serde(default)]
    pub within: Option<String>,
    /// A window of the test, both ends included: `[10m, 15m]`.
    #[serde(default)]
    pub between: Option<Vec<String>>,
    /// `anomaly`, `alert`, `notification`: on this channel only.
    #[serde(default)]
    pub channel: Option<String>,
    /// `anomaly`, `no_anomaly`: of this detector only.
    #[serde(default)]
    pub detector: Option<String>,
    /// `notification`: of this rule only.
    #[serde(default)]
    pub rule: Option<String>,
    /// `alert`, `no_alert`, `notification`: the transition.
    #[serde(default)]
    pub state: Option<ExpectedTransition>,
    /// `reading`, `fused`: the quality.
    #[serde(default)]
    pub quality: Option<ExpectedQuality>,
    /// `reading`, `fused`: flags the reading has (others may be there too);
    /// `[]` for none at all.
    #[serde(default)]
    pub flags: Option<Vec<String>>,
    /// `reading`, `fused`: the value (a reading without one never matches).
    #[serde(default)]
    pub value: Option<f64>,
    /// How far `value` may be off. Default 0.
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// `fused`: the inputs voted out of the round.
    #[serde(default)]
    pub voted_out: Option<Vec<String>>,
    /// `notification`: the alert's rendered title, exactly.
    #[serde(default)]
    pub title: Option<String>,
    /// `notification`: text the title contains.
    #[serde(default)]
    pub title_contains: Option<String>,
    /// `notification`: the alert's rendered body, exactly.
    #[serde(default)]
    pub body: Option<String>,
    /// `notification`: text the body contains.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// `notification`: what the notifier sends (a file's line, a webhook's
    /// body, an MQTT payload, stdout's record, exec's arguments joined by
    /// spaces), exactly.
    #[serde(default)]
    pub message: Option<String>,
    /// `notification`: text the message contains.
    #[serde(default)]
    pub message_contains: Option<String>,
    /// `notification`: the message is JSON and contains this (objects: these
    /// keys with matching values; other values: equal).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub message_json: Option<serde_json::Value>,
}

/// A reading's quality, in an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedQuality {
    Good,
    Suspect,
    Bad,
}

/// An alert's transition, in an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedTransition {
    /// The condition started to hold (`for` not reached yet).
    Pending,
    /// It held for `for`: the alert fired (or, for a notification, fired or repeated).
    Firing,
    /// A firing alert's condition stopped holding.
    Resolved,
}

const KEYS: &[&str] = &["version", "spec", "tests"];

/// Deserializes a test file, test by test, so one bad test does not hide
/// the problems of the next. What parsed is returned with the diagnostics.
pub fn parse_tests(doc: &SpecDoc) -> (TestFileSpec, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut spec = TestFileSpec::default();
    let entries = match &doc.root.value {
        NodeValue::Map(entries) => entries,
        _ => {
            diags.push(
                Diagnostic::error(Code::InvalidValue, "a test file is a map with `version: 1` and `tests`")
                    .at(doc.root.span),
            );
            return (spec, diags);
        }
    };
    for (key, span, _) in entries {
        if !KEYS.contains(&key.as_str()) {
            diags.push(
                Diagnostic::error(Code::UnknownField, format!("unknown key `{key}` in the test file"))
                    .at(*span)
                    .path(key)
                    .hint_opt(did_you_mean(key, KEYS.iter().copied()))
                    .note(format!("expected one of: {}", KEYS.join(", "))),
            );
        }
    }
    let root = &doc.root;
    match root.get("version") {
        Some(n) if matches!(n.value, NodeValue::Int(1)) => spec.version = 1,
        Some(n) => diags.push(
            Diagnostic::error(Code::Version, "unsupported test file version; this edgeguard reads `version: 1`")
                .at(n.span)
                .path("version"),
        ),
        None => diags.push(Diagnostic::error(Code::MissingField, "missing `version: 1`").at(root.span)),
    }
    if let Some(n) = root.get("spec") {
        spec.spec = deserialize_at(doc, n, "spec", "the test file", &mut diags);
    }
    match root.get("tests") {
        None => diags.push(Diagnostic::error(Code::MissingField, "missing `tests`").at(root.span)),
        Some(n) => match &n.value {
            NodeValue::Map(tests) => {
                for (name, _, node) in tests {
                    let path = join_key("tests", name);
                    if let Some(t) = deserialize_at(doc, node, &path, &format!("test `{name}`"), &mut diags) {
                        spec.tests.insert(name.clone(), t);
                    }
                }
            }
            _ => diags.push(
                Diagnostic::error(Code::InvalidValue, "`tests` must be a map from test name to test")
                    .at(n.span)
                    .path("tests"),
            ),
        },
    }
    (spec, diags)
}
