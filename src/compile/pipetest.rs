//! A test file → checked tests: series expanded, times parsed, every
//! channel, rule, detector and notifier an expectation names looked up in
//! the plan of the spec under test. Pure, every problem at once, like the
//! spec's own compiler; `pipetest` runs what comes out.

use std::time::Duration;

use super::{Code, Cx, Diagnostic, Plan, SourceKind};
use crate::model::record::{Flags, Quality, Transition};
use crate::spec::diag::did_you_mean;
use crate::spec::load::{join_index, join_key};
use crate::spec::pipetest::{ExpectSpec, ExpectedQuality, ExpectedTransition, TestFileSpec, TestSpec};
use crate::spec::SpecDoc;

/// Most samples one channel's series may expand to (a day at 100 ms).
pub const MAX_SERIES_SAMPLES: u64 = 1_000_000;

/// One sample of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    Value(f64),
    /// `_`: nothing arrives this interval.
    Missing,
    /// `bad`: a failed read, no value.
    Bad,
    /// `timeout`: a failed read flagged `timeout`.
    Timeout,
    /// `stale`: the channel is silent from here on.
    Stop,
}

/// Where a test's readings come from.
#[derive(Debug, Clone)]
pub enum TestInput {
    /// Series per channel, one sample every `interval` from time 0.
    Series { interval: Duration, channels: Vec<(String, Vec<Sample>)> },
    /// An NDJSON fixture (resolved against the test file's folder).
    File(std::path::PathBuf),
    /// The spec's simulators, for this long.
    Simulate(Duration),
}

/// When an expectation looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// At this time of the test, give or take `within`.
    At { at: Duration, within: Duration },
    /// In this window, both ends included.
    Between(Duration, Duration),
    /// Anywhere in the test.
    Always,
}

/// How a rendered text must look.
#[derive(Debug, Clone, PartialEq)]
pub enum TextMatch {
    Equals(String),
    Contains(String),
    Json(serde_json::Value),
}

/// What an expectation checks.
// A test file holds a few dozen of these, built once: the size of the
// largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Reading {
        channel: String,
        fused: bool,
        quality: Option<Quality>,
        /// `Some(empty)`: no flags at all.
        flags: Option<Flags>,
        value: Option<(f64, f64)>,
        voted_out: Option<Vec<String>>,
    },
    Anomaly {
        channel: String,
        detector: Option<String>,
        none: bool,
    },
    Alert {
        rule: String,
        channel: Option<String>,
        state: Phase,
        none: bool,
    },
    Notification {
        notifier: String,
        rule: Option<String>,
        channel: Option<String>,
        state: Option<Transition>,
        title: Option<TextMatch>,
        body: Option<TextMatch>,
        message: Option<TextMatch>,
    },
}

/// An alert's transition as the tests see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Firing,
    Resolved,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Resolved => "resolved",
        }
    }
}

/// One checked expectation.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Where it is written (1-based).
    pub line: usize,
    pub col: usize,
    pub check: Check,
    pub when: When,
}

/// One checked test.
#[derive(Debug, Clone)]
pub struct TestPlan {
    pub name: String,
    pub line: usize,
    /// `--set` overrides, as `PATH=VALUE`.
    pub set: Vec<String>,
    /// The spec compiled with `set` (filled when the test file is checked
    /// against the spec on disk); `None`: the spec as it is.
    pub overridden: Option<Box<Plan>>,
    pub input: TestInput,
    pub duration: Option<Duration>,
    /// (rule, channel glob, until).
    pub silences: Vec<(String, Option<String>, Duration)>,
    pub expect: Vec<Expectation>,
}

/// Checks the tests of `file` against `plan`, the spec under test.
pub fn compile_tests(
    doc: &SpecDoc,
    file: &TestFileSpec,
    plan: &Plan,
    diags: Vec<Diagnostic>,
) -> (Vec<TestPlan>, Vec<Diagnostic>) {
    let base_dir = std::path::Path::new(&doc.path).parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let mut cx = Cx { doc, diags, base_dir };
    let mut out = Vec::new();
    for (name, t) in &file.tests {
        let path = join_key("tests", name);
        out.push(compile_test(&mut cx, plan, &path, name, t));
    }
    (out, cx.diags)
}

fn compile_test(cx: &mut Cx, plan: &Plan, path: &str, name: &str, t: &TestSpec) -> TestPlan {
    let set = t
        .set
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    let given = super::given(&[
        ("series", !t.series.is_empty()),
        ("file", t.file.is_some()),
        ("simulate", t.simulate.is_some()),
    ]);
    if given.len() > 1 {
        cx.err_key(
            Code::Conflict,
            &join_key(path, given[1]),
            format!("a test reads one input; this one has `{}`", given.join("` and `")),
        );
    }
    let input = if let Some(f) = &t.file {
        TestInput::File(cx.base_dir.join(f))
    } else if let Some(d) = &t.simulate {
        let p = join_key(path, "simulate");
        if !plan.sources.iter().any(|s| matches!(s.kind, SourceKind::Simulate(_))) {
            cx.err(Code::Conflict, &p, "the spec has no `simulate` source to run");
        }
        TestInput::Simulate(cx.positive_duration(&p, Some(d), Duration::from_secs(60)))
    } else {
        let interval = cx.positive_duration(&join_key(path, "interval"), t.interval.as_deref(), Duration::from_secs(1));
        let mut channels = Vec::new();
        for (ch, text) in &t.series {
            let p = join_key(&join_key(path, "series"), ch);
            match parse_series(&text.text()) {
                Ok(s) => channels.push((ch.clone(), s)),
                Err(e) => {
                    cx.err(Code::TestSeries, &p, e).note = Some(
                        "samples: `80`, `80x30` (31 samples), `80+0.5x20`, `_`, `bad`, `timeout`, `_x5`, `stale`"
                            .into(),
                    );
                }
            }
        }
        if channels.is_empty() && t.series.is_empty() {
            cx.err_key(
                Code::MissingField,
                path,
                format!("test `{name}` has no input: give `series`, `file` or `simulate`"),
            );
        }
        TestInput::Series { interval, channels }
    };
    let duration = cx.opt_duration(&join_key(path, "duration"), t.duration.as_deref());
    let mut silences = Vec::new();
    for (i, s) in t.silences.iter().enumerate() {
        let p = join_index(&join_key(path, "silences"), i);
        known(cx, &join_key(&p, "rule"), "alert rule", &s.rule, plan.alerts.iter().map(|a| a.rule.as_str()));
        if let Some(until) = cx.opt_duration(&join_key(&p, "until"), Some(&s.until)) {
            silences.push((s.rule.clone(), s.channel.clone(), until));
        }
    }
    let series_channels: Vec<&str> = match &input {
        TestInput::Series { channels, .. } => channels.iter().map(|(c, _)| c.as_str()).collect(),
        TestInput::File(_) | TestInput::Simulate(_) => Vec::new(),
    };
    // A fixture or a source that does not name its channels (MQTT) may bring any channel.
    let open = matches!(input, TestInput::File(_))
        || plan.sources.iter().any(|s| !s.kind.names_all_channels())
        || plan.sources.is_empty() && series_channels.is_empty();
    let mut channels: Vec<String> = series_channels.iter().map(|c| c.to_string()).collect();
    if !matches!(input, TestInput::Series { .. }) {
        for s in &plan.sources {
            channels.extend(s.kind.channels().into_iter().map(|(c, _)| c.to_string()));
        }
    }
    channels.extend(plan.fuse.iter().map(|f| f.channel.clone()));
    let scope = Scope { plan, channels, open };
    let mut expect = Vec::new();
    for (i, e) in t.expect.iter().enumerate() {
        let p = join_index(&join_key(path, "expect"), i);
        if let Some(x) = expectation(cx, &scope, &p, e) {
            expect.push(x);
        }
    }
    TestPlan {
        name: name.to_string(),
        line: cx.doc.key_span(path).line,
        set,
        overridden: None,
        input,
        duration,
        silences,
        expect,
    }
}

struct Scope<'a> {
    plan: &'a Plan,
    channels: Vec<String>,
    open: bool,
}

/// Records E040 when `name` is not among `names`.
fn known<'a>(cx: &mut Cx, path: &str, what: &str, name: &str, names: impl Iterator<Item = &'a str> + Clone) -> bool {
    if names.clone().any(|n| n == name) {
        return true;
    }
    let hint = did_you_mean(name, names.clone());
    let all: Vec<&str> = names.collect();
    let note = if all.is_empty() { format!("the spec has no {what}") } else { format!("{what}s: {}", all.join(", ")) };
    let d = cx.err(Code::UnknownReference, path, format!("no {what} `{name}`"));
    d.hint = hint;
    d.note = Some(note);
    false
}

fn expectation(cx: &mut Cx, s: &Scope, path: &str, e: &ExpectSpec) -> Option<Expectation> {
    let kinds = [
        ("reading", &e.reading),
        ("fused", &e.fused),
        ("anomaly", &e.anomaly),
        ("no_anomaly", &e.no_anomaly),
        ("alert", &e.alert),
        ("no_alert", &e.no_alert),
        ("notification", &e.notification),
    ];
    let given: Vec<(&str, &String)> = kinds.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v))).collect();
    let span = cx.doc.value_span(path);
    let (kind, target) = match given.as_slice() {
        [one] => *one,
        [] => {
            cx.err(Code::TestExpectation, path, "an expectation names what it checks").note =
                Some("one of: reading, fused, anomaly, no_anomaly, alert, no_alert, notification".into());
            return None;
        }
        [_, second, ..] => {
            cx.err_key(
                Code::TestExpectation,
                &join_key(path, second.0),
                format!("an expectation checks one thing; this one has `{}` and `{}`", given[0].0, second.0),
            )
            .hint = Some("write two expectations".into());
            return None;
        }
    };
    let target_path = join_key(path, kind);
    let when = when(cx, path, e, kind)?;
    let channel_ok = |cx: &mut Cx, p: &str, ch: &str| -> bool {
        s.open || known(cx, p, "channel", ch, s.channels.iter().map(String::as_str))
    };
    let rules = || s.plan.alerts.iter().map(|a| a.rule.as_str());
    let misplaced = |cx: &mut Cx, keys: &[(&str, bool)]| {
        for (k, given) in keys {
            if *given {
                cx.err_key(
                    Code::TestExpectation,
                    &join_key(path, k),
                    format!("`{k}` says nothing about a {kind} expectation"),
                );
            }
        }
    };
    let reading_keys = [
        ("quality", e.quality.is_some()),
        ("flags", e.flags.is_some()),
        ("value", e.value.is_some()),
        ("tolerance", e.tolerance.is_some()),
        ("voted_out", e.voted_out.is_some()),
    ];
    let note_keys = [
        ("title", e.title.is_some()),
        ("title_contains", e.title_contains.is_some()),
        ("body", e.body.is_some()),
        ("body_contains", e.body_contains.is_some()),
        ("message", e.message.is_some()),
        ("message_contains", e.message_contains.is_some()),
        ("message_json", e.message_json.is_some()),
    ];
    let check = match kind {
        "reading" | "fused" => {
            misplaced(
                cx,
                &[
                    ("detector", e.detector.is_some()),
                    ("rule", e.rule.is_some()),
                    ("state", e.state.is_some()),
                    ("channel", e.channel.is_some()),
                ],
            );
            misplaced(cx, &note_keys);
            let fused = kind == "fused";
            if fused {
                known(cx, &target_path, "fused channel", target, s.plan.fuse.iter().map(|f| f.channel.as_str()));
            } else {
                channel_ok(cx, &target_path, target);
                misplaced(cx, &[("voted_out", e.voted_out.is_some())]);
            }
            let flags = e.flags.as_ref().map(|names| {
                let mut f = Flags::empty();
                for (i, n) in names.iter().enumerate() {
                    let flag = Flags::from_name(n);
                    if flag == Flags::UNKNOWN && n != "unknown" {
                        let all = Flags(u32::MAX).names().collect::<Vec<_>>();
                        let d = cx.err(
                            Code::InvalidValue,
                            &join_index(&join_key(path, "flags"), i),
                            format!("no flag `{n}`"),
                        );
                        d.hint = did_you_mean(n, all.iter().copied());
                        d.note = Some(format!("flags: {}", all.join(", ")));
                    }
                    f.insert(flag);
                }
                f
            });
            if matches!(when, When::Always) {
                cx.err(Code::TestExpectation, &target_path, format!("a {kind} expectation needs `at` or `between`"));
                return None;
            }
            Check::Reading {
                channel: target.clone(),
                fused,
                quality: e.quality.map(|q| match q {
                    ExpectedQuality::Good => Quality::Good,
                    ExpectedQuality::Suspect => Quality::Suspect,
                    ExpectedQuality::Bad => Quality::Bad,
                }),
                flags,
                value: e.value.map(|v| (v, e.tolerance.unwrap_or(0.0))),
                voted_out: e.voted_out.clone(),
            }
        }
        "anomaly" | "no_anomaly" => {
            misplaced(cx, &reading_keys);
            misplaced(cx, &note_keys);
            misplaced(
                cx,
                &[("rule", e.rule.is_some()), ("state", e.state.is_some()), ("channel", e.channel.is_some())],
            );
            channel_ok(cx, &target_path, target);
            if let Some(d) = &e.detector {
                known(cx, &join_key(path, "detector"), "detector", d, s.plan.detect.iter().map(|d| d.id.as_str()));
            }
            Check::Anomaly { channel: target.clone(), detector: e.detector.clone(), none: kind == "no_anomaly" }
        }
        "alert" | "no_alert" => {
            misplaced(cx, &reading_keys);
            misplaced(cx, &note_keys);
            misplaced(cx, &[("detector", e.detector.is_some()), ("rule", e.rule.is_some())]);
            known(cx, &target_path, "alert rule", target, rules());
            Check::Alert {
                rule: target.clone(),
                channel: e.channel.clone(),
                state: match e.state.unwrap_or(ExpectedTransition::Firing) {
                    ExpectedTransition::Pending => Phase::Pending,
                    ExpectedTransition::Firing => Phase::Firing,
                    ExpectedTransition::Resolved => Phase::Resolved,
                },
                none: kind == "no_alert",
            }
        }
        _ => {
            misplaced(cx, &reading_keys);
            misplaced(cx, &[("detector", e.detector.is_some())]);
            known(cx, &target_path, "notifier", target, s.plan.notifiers.iter().map(|n| n.id.as_str()));
            if let Some(r) = &e.rule {
                known(cx, &join_key(path, "rule"), "alert rule", r, rules());
            }
            let text =
                |cx: &mut Cx, what: &str, exact: &Option<String>, contains: &Option<String>| -> Option<TextMatch> {
                    if exact.is_some() && contains.is_some() {
                        cx.err_key(
                            Code::TestExpectation,
                            &join_key(path, &format!("{what}_contains")),
                            format!("`{what}` and `{what}_contains` both given"),
                        );
                    }
                    exact.clone().map(TextMatch::Equals).or_else(|| contains.clone().map(TextMatch::Contains))
                };
            let title = text(cx, "title", &e.title, &e.title_contains);
            let body = text(cx, "body", &e.body, &e.body_contains);
            let message = text(cx, "message", &e.message, &e.message_contains)
                .or_else(|| e.message_json.clone().map(TextMatch::Json));
            Check::Notification {
                notifier: target.clone(),
                rule: e.rule.clone(),
                channel: e.channel.clone(),
                state: e.state.and_then(|s| match s {
                    ExpectedTransition::Pending => {
                        cx.err(
                            Code::TestExpectation,
                            &join_key(path, "state"),
                            "nothing is sent while an alert is pending",
                        )
                        .hint = Some("`state: firing` or `state: resolved`".into());
                        None
                    }
                    ExpectedTransition::Firing => Some(Transition::Firing),
                    ExpectedTransition::Resolved => Some(Transition::Resolved),
                }),
                title,
                body,
                message,
            }
        }
    };
    Some(Expectation { line: span.line, col: span.col, check, when })
}

fn when(cx: &mut Cx, path: &str, e: &ExpectSpec, kind: &str) -> Option<When> {
    let at = cx.opt_duration(&join_key(path, "at"), e.at.as_deref());
    let within = cx.opt_duration(&join_key(path, "within"), e.within.as_deref());
    let between = match &e.between {
        None => None,
        Some(b) if b.len() == 2 => {
            let bp = join_key(path, "between");
            let t1 = cx.opt_duration(&join_index(&bp, 0), Some(&b[0]))?;
            let t2 = cx.opt_duration(&join_index(&bp, 1), Some(&b[1]))?;
            if t2 < t1 {
                cx.err(Code::TestExpectation, &bp, "the window ends before it starts");
                return None;
            }
            Some((t1, t2))
        }
        Some(_) => {
            cx.err(Code::TestExpectation, &join_key(path, "between"), "`between` is two times: `[10m, 15m]`");
            return None;
        }
    };
    if e.at.is_some() && e.between.is_some() {
        cx.err_key(Code::TestExpectation, &join_key(path, "between"), "`at` and `between` both given; use one");
        return None;
    }
    if e.within.is_some() && e.at.is_none() {
        cx.err_key(Code::TestExpectation, &join_key(path, "within"), "`within` goes with `at`");
    }
    let negative = kind.starts_with("no_");
    if negative && e.at.is_some() {
        cx.err_key(
            Code::TestExpectation,
            &join_key(path, "at"),
            format!("a {kind} expectation looks `between` two times"),
        );
        return None;
    }
    Some(match (at, between) {
        (Some(at), _) => When::At { at, within: within.unwrap_or_default() },
        (None, Some((a, b))) => When::Between(a, b),
        (None, None) if e.at.is_some() || e.between.is_some() => return None,
        (None, None) => When::Always,
    })
}

/// Expands the series notation (`80x30 96+0.5x20 _x5 bad timeout stale`);
/// `VxN` and `V±DxN` are N+1 samples (as in promtool), `_xN`, `badxN` and
/// `timeoutxN` are N.
pub fn parse_series(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    let mut stopped = false;
    for tok in text.split_whitespace() {
        if stopped {
            return Err(format!("`{tok}` after `stale`: a stale channel stays silent to the end"));
        }
        if tok == "stale" {
            out.push(Sample::Stop);
            stopped = true;
            continue;
        }
        let (head, count) = match tok.rsplit_once('x') {
            Some((h, n)) => {
                let n: u64 = n.parse().map_err(|_| format!("`{tok}`: `x` is followed by a count, like `80x30`"))?;
                (h, Some(n))
            }
            None => (tok, None),
        };
        let plain = |s: Sample| -> (Sample, f64, u64) { (s, 0.0, count.unwrap_or(1)) };
        let (first, step, n) = match head {
            "_" => plain(Sample::Missing),
            "bad" => plain(Sample::Bad),
            "timeout" => plain(Sample::Timeout),
            _ => {
                let split = head
                    .char_indices()
                    .skip(1)
                    .find(|&(i, c)| (c == '+' || c == '-') && !head[..i].ends_with(['e', 'E']))
                    .map(|(i, _)| i);
                let (v, d) = match split {
                    Some(i) => (&head[..i], Some(&head[i..])),
                    None => (head, None),
                };
                let number = |s: &str| -> Result<f64, String> {
                    s.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| match s == tok {
                        true => format!("`{tok}` is not a number, `_`, `bad`, `timeout` or `stale`"),
                        false => format!("`{s}` in `{tok}` is not a number"),
                    })
                };
                let v = number(v)?;
                let d = d.map(|d| number(d.strip_prefix('+').unwrap_or(d))).transpose()?;
                if d.is_some() && count.is_none() {
                    return Err(format!("`{tok}`: a step needs a count, like `{head}x10`"));
                }
                (Sample::Value(v), d.unwrap_or(0.0), count.map_or(1, |n| n + 1))
            }
        };
        if out.len() as u64 + n > MAX_SERIES_SAMPLES {
            return Err(format!("more than {MAX_SERIES_SAMPLES} samples"));
        }
        for k in 0..n {
            out.push(match first {
                Sample::Value(v) => Sample::Value(v + step * k as f64),
                other => other,
            });
        }
    }
    if out.is_empty() {
        return Err("an empty series".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Sample::*;

    #[test]
    fn series_expand_like_promtool() {
        assert_eq!(parse_series("1x2").unwrap(), vec![Value(1.0); 3]);
        assert_eq!(
            parse_series("1+0.5x2 _x2 bad timeout stale").unwrap(),
            vec![Value(1.0), Value(1.5), Value(2.0), Missing, Missing, Bad, Timeout, Stop]
        );
        assert_eq!(parse_series("-5-1x1 1e3 2e-1").unwrap(), vec![Value(-5.0), Value(-6.0), Value(1000.0), Value(0.2)]);
        assert_eq!(parse_series("badx2").unwrap(), vec![Bad, Bad]);
    }

    #[test]
    fn bad_series_say_which_token() {
        assert!(parse_series("80 hot").unwrap_err().contains("`hot`"));
        assert!(parse_series("80xlots").unwrap_err().contains("count"));
        assert!(parse_series("stale 80").unwrap_err().contains("after `stale`"));
        assert!(parse_series("80+1").unwrap_err().contains("needs a count"));
        assert!(parse_series("").is_err());
        assert!(parse_series("1x2000000").is_err());
    }

    proptest::proptest! {
        #[test]
        fn a_step_series_has_n_plus_one_samples(v in -1e6f64..1e6, d in -100f64..100.0, n in 0u64..500) {
            let s = parse_series(&format!("{v}+{d}x{n}")).unwrap();
            proptest::prop_assert_eq!(s.len() as u64, n + 1);
            if let (Some(Value(first)), Some(Value(last))) = (s.first(), s.last()) {
                proptest::prop_assert!((first - v).abs() < 1e-9);
                proptest::prop_assert!((last - (v + d * n as f64)).abs() < 1e-6 * (1.0 + v.abs() + (d * n as f64).abs()));
            }
        }
    }
}
