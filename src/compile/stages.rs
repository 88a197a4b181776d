//! Compiles `channels`, `fuse`, `detect` and `alerts`: rules, references
//! between them, and their expressions.

use std::time::Duration;

use super::diag::{did_you_mean, Code};
use super::plan::*;
use super::{key, templates, Cx};
use crate::model::channel::{channel_matcher, is_glob};
use crate::spec::*;

/// Whether every channel the pipeline can see is named in the spec, so a
/// channel reference can be checked against them: not for a spec of
/// `--input` pipelines (no sources), nor with MQTT topic templates.
pub(super) fn closed_world(spec: &Spec, plan: &Plan) -> bool {
    !spec.sources.is_empty()
        && plan.sources.len() == spec.sources.len()
        && plan.sources.iter().all(|s| s.kind.names_all_channels())
}

pub(super) fn compile_stages(cx: &mut Cx, spec: &Spec, plan: &mut Plan) {
    let produced: Vec<String> = plan.produced_channels().into_iter().map(str::to_string).collect();
    let closed_world = closed_world(spec, plan);

    for (pattern, c) in &spec.channels {
        let path = key("channels", pattern);
        let glob = is_glob(pattern);
        if glob {
            match channel_matcher(pattern) {
                Err(e) => {
                    cx.err_key(Code::InvalidValue, &path, format!("`{pattern}` is not a valid glob: {e}"));
                }
                Ok(m) => {
                    let fused: Vec<&str> = spec.fuse.keys().chain(spec.compute.keys()).map(String::as_str).collect();
                    let any = produced.iter().map(String::as_str).chain(fused).any(|ch| m.is_match(ch));
                    if closed_world && !any {
                        cx.err_key(
                            Code::GlobMatchesNothing,
                            &path,
                            format!("`{pattern}` matches no channel of this pipeline"),
                        );
                    }
                }
            }
        } else {
            cx.check_channel(&path, pattern);
        }
        let range = c.range.and_then(|[lo, hi]| {
            if lo.is_finite() && hi.is_finite() && lo < hi {
                Some((lo, hi))
            } else {
                cx.err(
                    Code::InvalidQuantity,
                    &key(&path, "range"),
                    format!("range [{lo}, {hi}] is empty: write [low, high]"),
                );
                None
            }
        });
        let rule = ChannelRule {
            pattern: pattern.clone(),
            is_glob: glob,
            unit: c.unit.clone(),
            range,
            max_rate: cx.rate(&key(&path, "max_rate"), c.max_rate.as_deref()),
            stuck: cx.opt_duration(&key(&path, "stuck"), c.stuck.as_deref()),
            stale: cx.opt_duration(&key(&path, "stale"), c.stale.as_deref()),
        };
        if !glob
            && closed_world
            && !produced.contains(pattern)
            && !spec.fuse.contains_key(pattern)
            && !spec.compute.contains_key(pattern)
        {
            let d = cx.err_key(Code::UnknownReference, &path, format!("no source produces channel `{pattern}`"));
            d.hint = did_you_mean(pattern, produced.iter().map(String::as_str));
        }
        plan.channels.push(rule);
    }

    for (channel, f) in &spec.fuse {
        let path = key("fuse", channel);
        cx.check_channel(&path, channel);
        if f.inputs.len() < 2 {
            cx.err(Code::InvalidValue, &key(&path, "inputs"), "fusion needs at least two inputs");
        }
        for (i, input) in f.inputs.iter().enumerate() {
            let ip = super::diag_index(&key(&path, "inputs"), i);
            if closed_world && !produced.contains(input) && !spec.fuse.contains_key(input) {
                let d = cx.err(Code::UnknownReference, &ip, format!("no source produces channel `{input}`"));
                d.hint = did_you_mean(input, produced.iter().map(String::as_str));
            }
            if input == channel {
                cx.err(Code::Conflict, &ip, "a fused channel cannot be its own input");
            }
        }
        let min_inputs = f.min_inputs.unwrap_or(1);
        if min_inputs == 0 || min_inputs > f.inputs.len() {
            cx.err(
                Code::InvalidValue,
                &key(&path, "min_inputs"),
                format!("min_inputs is between 1 and the {} inputs", f.inputs.len()),
            );
        }
        if let Some(s) = f.max_spread {
            if s.is_nan() || s <= 0.0 {
                cx.err(Code::InvalidValue, &key(&path, "max_spread"), "max_spread must be positive");
            }
        }
        let mut sigma = vec![None; f.inputs.len()];
        if let Some(map) = &f.sigma {
            if f.method != FuseMethod::Weighted {
                cx.err(Code::Useless, &key(&path, "sigma"), "`sigma` is used by `method: weighted` only");
            }
            for (input, s) in map {
                match f.inputs.iter().position(|i| i == input) {
                    Some(i) => sigma[i] = Some(*s),
                    None => {
                        cx.err_key(
                            Code::UnknownReference,
                            &key(&key(&path, "sigma"), input),
                            format!("`{input}` is not an input of this fusion"),
                        )
                        .hint = did_you_mean(input, f.inputs.iter().map(String::as_str));
                    }
                }
            }
        }
        if f.method != FuseMethod::Kalman
            && (f.process_noise.is_some() || f.measurement_noise.is_some() || f.model.is_some())
        {
            cx.err(
                Code::Useless,
                &path,
                "model, process_noise and measurement_noise are used by `method: kalman` only",
            );
        }
        plan.fuse.push(FusePlan {
            channel: channel.clone(),
            inputs: f.inputs.clone(),
            method: f.method,
            window: cx.positive_duration(&key(&path, "window"), f.window.as_deref(), Duration::from_secs(2)),
            max_spread: f.max_spread,
            min_inputs: min_inputs.max(1),
            sigma,
            process_noise: f.process_noise.unwrap_or(0.01),
            measurement_noise: f.measurement_noise.unwrap_or(1.0),
            model: f.model.unwrap_or_default(),
            suspect_after: cx.positive_duration(
                &key(&path, "suspect_after"),
                f.suspect_after.as_deref(),
                Duration::from_secs(60),
            ),
            unit: f.unit.clone(),
        });
    }

    let all_channels: Vec<String> =
        produced.iter().cloned().chain(spec.fuse.keys().cloned()).chain(spec.compute.keys().cloned()).collect();
    for (id, d) in &spec.detect {
        let path = key("detect", id);
        cx.check_id(&path, id, "detector");
        check_glob_reference(cx, &key(&path, "channel"), &d.channel, &all_channels, closed_world);
        plan.detect.push(detector(cx, &path, id, d));
    }

    for (rule, a) in &spec.alerts {
        let path = key("alerts", rule);
        cx.check_id(&path, rule, "alert rule");
        let sample = match a.over {
            AlertOver::Sources => super::quiet::source_sample(),
            AlertOver::Channels => {
                crate::model::template::sample_record(all_channels.first().map_or("sample.channel", String::as_str))
            }
        };
        templates::check_expression(cx, &key(&path, "when"), &a.when, &sample);
        let title = match (&a.title, a.relay) {
            (Some(t), _) => t.clone(),
            // A relayed alert keeps the title its gateway rendered.
            (None, true) => String::new(),
            (None, false) => match a.over {
                AlertOver::Channels => "{{ rule }} {{ state }}: {{ channel }} = {{ value }}".into(),
                AlertOver::Sources => "{{ rule }} {{ state }}: source {{ source }}".into(),
            },
        };
        if a.relay {
            for (k, given) in
                [("for", a.duration.is_some()), ("repeat", a.repeat.is_some()), ("resolve", a.resolve.is_some())]
            {
                if given {
                    cx.err_key(
                        Code::Conflict,
                        &key(&path, k),
                        format!(
                            "`{k}` does not apply to a relay rule: the gateway's rule decided when its alert fired"
                        ),
                    );
                }
            }
        }
        if a.title.is_some() {
            templates::check_template(cx, &key(&path, "title"), &title, &sample);
        }
        if let Some(body) = &a.body {
            templates::check_template(cx, &key(&path, "body"), body, &sample);
        }
        for (i, n) in a.notify.iter().enumerate() {
            if !spec.notifiers.contains_key(n) {
                let d = cx.err(
                    Code::UnknownReference,
                    &super::diag_index(&key(&path, "notify"), i),
                    format!("no notifier `{n}`"),
                );
                d.hint = did_you_mean(n, spec.notifiers.keys().map(String::as_str));
            }
        }
        if a.notify.is_empty() {
            cx.err_key(Code::Useless, &path, "this rule notifies nobody; alert records are still stored and printed");
        }
        let mut alert = AlertPlan {
            rule: rule.clone(),
            when: a.when.clone(),
            relay: a.relay,
            duration: cx.duration(&key(&path, "for"), a.duration.as_deref(), Duration::ZERO),
            severity: a.severity,
            repeat: cx.opt_duration(&key(&path, "repeat"), a.repeat.as_deref()),
            resolve: a.resolve.unwrap_or(true),
            notify: a.notify.clone(),
            title,
            body: a.body.clone(),
            labels: a.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            over: AlertOver::Channels,
            resolve_when: None,
            flapping: None,
            inhibit: None,
            group: None,
            mute: Vec::new(),
        };
        super::quiet::rule(cx, spec, &path, rule, a, &mut alert);
        plan.alerts.push(alert);
    }
}

pub(super) fn check_glob_reference(cx: &mut Cx, path: &str, pattern: &str, channels: &[String], closed_world: bool) {
    if is_glob(pattern) {
        match channel_matcher(pattern) {
            Err(e) => {
                cx.err(Code::InvalidValue, path, format!("`{pattern}` is not a valid glob: {e}"));
            }
            Ok(m) => {
                if closed_world && !channels.iter().any(|c| m.is_match(c)) {
                    cx.err(Code::GlobMatchesNothing, path, format!("`{pattern}` matches no channel of this pipeline"));
                }
            }
        }
    } else if closed_world && !channels.iter().any(|c| c == pattern) {
        let d = cx.err(Code::UnknownReference, path, format!("no channel `{pattern}`"));
        d.hint = did_you_mean(pattern, channels.iter().map(String::as_str));
    }
}

fn detector(cx: &mut Cx, path: &str, id: &str, d: &DetectSpec) -> DetectPlan {
    use DetectMethod as M;
    // Which parameters each method reads; the others are errors so that a
    // misplaced `alpha` on a zscore detector is not silently ignored.
    let used: &[&str] = match d.method {
        M::Zscore | M::Mad => &["window", "threshold", "warmup"],
        M::Ewma => &["alpha", "threshold", "warmup"],
        M::Rate => &["max_rate"],
        M::Flatline => &["tolerance", "for"],
        M::Iforest => &["window", "threshold", "trees", "warmup", "seed"],
        M::Pattern => &["steps", "within"],
    };
    let given: [(&str, bool); 11] = [
        ("window", d.window.is_some()),
        ("threshold", d.threshold.is_some()),
        ("alpha", d.alpha.is_some()),
        ("tolerance", d.tolerance.is_some()),
        ("for", d.duration.is_some()),
        ("max_rate", d.max_rate.is_some()),
        ("trees", d.trees.is_some()),
        ("warmup", d.warmup.is_some()),
        ("seed", d.seed.is_some()),
        ("steps", d.steps.is_some()),
        ("within", d.within.is_some()),
    ];
    let method = d.method.name();
    for (name, present) in given {
        if present && !used.contains(&name) {
            cx.err_key(Code::Conflict, &key(path, name), format!("`{name}` does not apply to method `{method}`"))
                .note = Some(format!("`{method}` reads: {}", used.join(", ")));
        }
    }
    let required: &[&str] = match d.method {
        M::Rate => &["max_rate"],
        M::Flatline => &["for"],
        M::Pattern => &["steps", "within"],
        M::Zscore | M::Mad | M::Ewma | M::Iforest => &[],
    };
    for r in required {
        if !given.iter().any(|(n, p)| n == r && *p) {
            cx.err_key(Code::MissingField, path, format!("method `{method}` needs `{r}`"));
        }
    }
    if let Some(t) = d.threshold {
        if t.is_nan() || t <= 0.0 {
            cx.err(Code::InvalidValue, &key(path, "threshold"), "threshold must be positive");
        }
    }
    if let Some(t) = d.trees {
        if !(1..=1000).contains(&t) {
            cx.err(Code::InvalidValue, &key(path, "trees"), "trees is between 1 and 1000");
        }
    }
    if let Some(a) = d.alpha {
        if !(a > 0.0 && a <= 1.0) {
            cx.err(Code::InvalidValue, &key(path, "alpha"), "alpha is in (0, 1]");
        }
    }
    let sample = crate::model::template::sample_record("sample.channel");
    for (i, step) in d.steps.iter().flatten().enumerate() {
        templates::check_expression(cx, &super::diag_index(&key(path, "steps"), i), step, &sample);
    }
    DetectPlan {
        id: id.to_string(),
        channel: d.channel.clone(),
        method: d.method,
        // Every default is filled in here, so `--dump-plan` shows what runs.
        window: cx
            .opt_duration(&key(path, "window"), d.window.as_deref())
            .or(used.contains(&"window").then_some(DetectPlan::DEFAULT_WINDOW)),
        threshold: Some(d.threshold.unwrap_or(DetectPlan::default_threshold(d.method))),
        alpha: d.alpha.or(used.contains(&"alpha").then_some(DetectPlan::DEFAULT_ALPHA)),
        tolerance: d.tolerance,
        duration: cx.opt_duration(&key(path, "for"), d.duration.as_deref()),
        max_rate: cx.rate(&key(path, "max_rate"), d.max_rate.as_deref()),
        trees: d.trees.or(used.contains(&"trees").then_some(DetectPlan::DEFAULT_TREES)),
        warmup: cx.opt_duration(&key(path, "warmup"), d.warmup.as_deref()),
        seed: d.seed.or(used.contains(&"seed").then_some(DetectPlan::DEFAULT_SEED)),
        steps: d.steps.clone().unwrap_or_default(),
        within: cx.opt_duration(&key(path, "within"), d.within.as_deref()),
    }
}
