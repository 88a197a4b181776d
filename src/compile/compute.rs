//! Compiles `compute`: which kind each computed channel is, the parameters
//! that kind reads, its expression (positions point into it), the channels
//! it reads (they must exist: E040), their units (E032) and that no
//! computed channel depends on itself through others (E042).

use std::time::Duration;

use super::diag::{did_you_mean, Code, Span};
use super::plan::*;
use super::stages::closed_world;
use super::{key, Cx};
use crate::model::channel::channel_matcher;
use crate::model::expr::Expr;
use crate::spec::*;

/// The five kinds, as their keys.
const KINDS: [&str; 5] = ["expr", "rate", "integrate", "delta", "rolling"];

pub(super) fn compile_compute(cx: &mut Cx, spec: &Spec, plan: &mut Plan) {
    if spec.compute.is_empty() {
        return;
    }
    let closed_world = closed_world(spec, plan);
    let sourced: Vec<String> = plan.produced_channels().into_iter().map(str::to_string).collect();
    let known: Vec<&str> = sourced.iter().map(String::as_str).chain(spec.compute.keys().map(String::as_str)).collect();
    let mut compiled: Vec<ComputePlan> = Vec::new();
    for (channel, c) in &spec.compute {
        let path = key("compute", channel);
        cx.check_channel(&path, channel);
        if sourced.contains(channel) {
            cx.err_key(Code::DuplicateChannel, &path, format!("channel `{channel}` is already produced")).note =
                Some("a computed channel is a new channel; give it a name of its own".into());
        }
        let given: Vec<(&str, &String)> = [&c.expr, &c.rate, &c.integrate, &c.delta, &c.rolling]
            .into_iter()
            .zip(KINDS)
            .filter_map(|(v, k)| v.as_ref().map(|v| (k, v)))
            .collect();
        let (kind, input) = match given.as_slice() {
            [] => {
                cx.err_key(
                    Code::MissingField,
                    &path,
                    "a computed channel needs one of `expr`, `rate`, `integrate`, `delta`, `rolling`",
                );
                continue;
            }
            [one] => *one,
            [first, second, ..] => {
                cx.err_key(
                    Code::Conflict,
                    &key(&path, second.0),
                    format!("`{}` and `{}` both given: a computed channel is one of them", first.0, second.0),
                );
                continue;
            }
        };
        let Some(p) = compute(cx, &path, channel, kind, input, c) else { continue };
        for (i, name) in p.inputs.iter().enumerate() {
            if name == channel {
                let at = input_span(cx, &path, kind, &p, i);
                cx.diags.push(
                    super::Diagnostic::error(Code::Cycle, format!("`{channel}` is computed from itself"))
                        .at(at)
                        .path(&key(&path, kind)),
                );
            } else if closed_world && !known.contains(&name.as_str()) {
                let at = input_span(cx, &path, kind, &p, i);
                let mut d = super::Diagnostic::error(Code::UnknownReference, format!("no channel `{name}`"))
                    .at(at)
                    .path(&key(&path, kind));
                d.hint = did_you_mean(name, known.iter().copied());
                cx.diags.push(d);
            }
        }
        compiled.push(p);
    }
    check_cycles(cx, &compiled);
    let units = check_units(cx, plan, &compiled);
    for (p, unit) in compiled.iter_mut().zip(units) {
        if p.unit.is_none() {
            p.unit = unit;
        }
    }
    plan.compute = compiled;
}

/// The plan of one computed channel of kind `kind` reading `input` (the
/// expression for `expr`), with the parameters that kind reads.
fn compute(cx: &mut Cx, path: &str, channel: &str, kind: &str, input: &str, c: &ComputeSpec) -> Option<ComputePlan> {
    let used: &[&str] = match kind {
        "expr" => &["max_age", "every"],
        "rate" => &["counter", "per"],
        "integrate" => &["per", "max_gap"],
        "delta" => &["every", "counter"],
        _ => &["window", "stat"],
    };
    let given = [
        ("counter", c.counter.is_some()),
        ("per", c.per.is_some()),
        ("max_age", c.max_age.is_some()),
        ("max_gap", c.max_gap.is_some()),
        ("every", c.every.is_some()),
        ("window", c.window.is_some()),
        ("stat", c.stat.is_some()),
    ];
    let mut ok = true;
    for (name, present) in given {
        if present && !used.contains(&name) {
            cx.err_key(Code::Conflict, &key(path, name), format!("`{name}` does not apply to `{kind}`")).note =
                Some(format!("`{kind}` reads: {}, unit", used.join(", ")));
            ok = false;
        }
    }
    let required: &[&str] = match kind {
        "delta" => &["every"],
        "rolling" => &["window", "stat"],
        _ => &[],
    };
    for r in required {
        if !given.iter().any(|(n, p)| n == r && *p) {
            cx.err_key(Code::MissingField, path, format!("`{kind}` needs `{r}`"));
            ok = false;
        }
    }
    let per = || ComputePlan::DEFAULT_PER;
    let kind_plan = match kind {
        "expr" => {
            let expr = match Expr::parse(input) {
                Ok(e) => e,
                Err(e) => {
                    let at = expr_span(cx, &key(path, "expr"), input, e.at);
                    let mut d = super::Diagnostic::error(Code::Template, format!("expression: {}", e.message))
                        .at(at)
                        .path(&key(path, "expr"));
                    d.hint = e.hint;
                    cx.diags.push(d);
                    return None;
                }
            };
            let every = cx.opt_duration(&key(path, "every"), c.every.as_deref());
            let inputs = expr.names().to_vec();
            if inputs.is_empty() {
                cx.err(Code::InvalidValue, &key(path, "expr"), "the expression reads no channel");
                ok = false;
            }
            (
                ComputeKind::Expr {
                    expr: input.to_string(),
                    max_age: cx.positive_duration(
                        &key(path, "max_age"),
                        c.max_age.as_deref(),
                        ComputePlan::DEFAULT_MAX_AGE,
                    ),
                    every: every.filter(|d| nonzero(cx, &key(path, "every"), *d)),
                },
                inputs,
            )
        }
        "rate" => (
            ComputeKind::Rate {
                counter: c.counter,
                per: cx.positive_duration(&key(path, "per"), c.per.as_deref(), per()),
            },
            vec![input.to_string()],
        ),
        "integrate" => (
            ComputeKind::Integrate {
                per: cx.positive_duration(&key(path, "per"), c.per.as_deref(), per()),
                max_gap: cx.positive_duration(
                    &key(path, "max_gap"),
                    c.max_gap.as_deref(),
                    ComputePlan::DEFAULT_MAX_GAP,
                ),
            },
            vec![input.to_string()],
        ),
        "delta" => (
            ComputeKind::Delta {
                every: cx.positive_duration(&key(path, "every"), c.every.as_deref(), Duration::from_secs(60)),
                counter: c.counter,
            },
            vec![input.to_string()],
        ),
        _ => (
            ComputeKind::Rolling {
                window: cx.positive_duration(&key(path, "window"), c.window.as_deref(), Duration::from_secs(60)),
                stat: c.stat.unwrap_or(RollingStat::Avg),
            },
            vec![input.to_string()],
        ),
    };
    if kind != "expr" {
        cx.check_channel(&key(path, kind), input);
    }
    let (kind, inputs) = kind_plan;
    ok.then(|| ComputePlan { channel: channel.to_string(), inputs, kind, unit: c.unit.clone() })
}

fn nonzero(cx: &mut Cx, path: &str, d: Duration) -> bool {
    if d.is_zero() {
        cx.err(Code::InvalidQuantity, path, "must be longer than zero");
    }
    !d.is_zero()
}

/// Where input `i` of `p` is written: in the expression, or the value of
/// the kind's key.
fn input_span(cx: &Cx, path: &str, kind: &str, p: &ComputePlan, i: usize) -> Span {
    match &p.kind {
        ComputeKind::Expr { expr, .. } => {
            let at = Expr::parse(expr).map(|e| e.name_at(i)).unwrap_or(0);
            expr_span(cx, &key(path, "expr"), expr, at)
        }
        ComputeKind::Rate { .. }
        | ComputeKind::Integrate { .. }
        | ComputeKind::Delta { .. }
        | ComputeKind::Rolling { .. } => cx.doc.value_span(&key(path, kind)),
    }
}

/// The position of byte `offset` of the expression at `path`: inside the
/// line when the expression is written on one (plain or quoted), else the
/// start of the value.
fn expr_span(cx: &Cx, path: &str, expr: &str, offset: usize) -> Span {
    let start = cx.doc.value_span(path);
    let Some(line) = cx.doc.text.lines().nth(start.line.saturating_sub(1)) else { return start };
    let Some(rest) = line.char_indices().nth(start.col.saturating_sub(1)).map(|(b, _)| &line[b..]) else {
        return start;
    };
    let quoted = rest.starts_with('"') || rest.starts_with('\'');
    let body = if quoted { &rest[1..] } else { rest };
    let prefix = &expr[..offset.min(expr.len())];
    // Only when the text is there as written (no escapes, no folding).
    if !body.starts_with(prefix) {
        return start;
    }
    Span { line: start.line, col: start.col + usize::from(quoted) + prefix.chars().count() }
}

/// E042: a computed channel that reads itself through other computed channels.
fn check_cycles(cx: &mut Cx, plans: &[ComputePlan]) {
    let index = |name: &str| plans.iter().position(|p| p.channel == name);
    // 0 = not seen, 1 = on the current path, 2 = done.
    let mut mark = vec![0u8; plans.len()];
    let mut reported = false;
    fn visit(
        i: usize,
        plans: &[ComputePlan],
        index: &dyn Fn(&str) -> Option<usize>,
        mark: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        mark[i] = 1;
        stack.push(i);
        for input in &plans[i].inputs {
            let Some(j) = index(input) else { continue };
            if j == i {
                continue; // reported on its own
            }
            if mark[j] == 1 {
                let from = stack.iter().position(|&s| s == j).unwrap_or(0);
                return Some(stack[from..].to_vec());
            }
            if mark[j] == 0 {
                if let Some(c) = visit(j, plans, index, mark, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        mark[i] = 2;
        None
    }
    for i in 0..plans.len() {
        if mark[i] != 0 || reported {
            continue;
        }
        let mut stack = Vec::new();
        if let Some(cycle) = visit(i, plans, &index, &mut mark, &mut stack) {
            let names: Vec<&str> = cycle.iter().chain(cycle.first()).map(|&k| plans[k].channel.as_str()).collect();
            let first = &plans[cycle[0]].channel;
            cx.err_key(
                Code::Cycle,
                &key("compute", first),
                format!("computed channels depend on each other: {}", names.join(" → ")),
            )
            .hint = Some("a computed channel can read others only when they do not read it back".into());
            reported = true;
        }
    }
}

/// The unit of `channel` where the spec says it: its channel rule (an
/// exact name, else the first glob), else its source point or signal, its
/// fusion, or its computed channel's `unit`.
fn unit_of<'a>(plan: &'a Plan, plans: &'a [ComputePlan], channel: &str) -> Option<&'a str> {
    let rule = plan.channels.iter().find(|r| !r.is_glob && r.pattern == channel).or_else(|| {
        plan.channels.iter().find(|r| r.is_glob && channel_matcher(&r.pattern).is_ok_and(|m| m.is_match(channel)))
    });
    if let Some(u) = rule.and_then(|r| r.unit.as_deref()) {
        return Some(u);
    }
    for s in &plan.sources {
        match &s.kind {
            SourceKind::Modbus(m) => {
                if let Some(p) = m.points.iter().find(|p| p.channel == channel) {
                    return p.unit.as_deref();
                }
            }
            SourceKind::Simulate(sim) => {
                if let Some(sig) = sim.signals.iter().find(|s| s.channel == channel) {
                    return sig.unit.as_deref();
                }
            }
            SourceKind::Serial(_) | SourceKind::Mqtt(_) | SourceKind::Nats(_) => {}
        }
    }
    if let Some(f) = plan.fuse.iter().find(|f| f.channel == channel) {
        return f.unit.as_deref();
    }
    plans.iter().find(|p| p.channel == channel).and_then(|p| p.unit.as_deref())
}

/// E032: an expression whose inputs' units disagree, or whose result is not
/// the unit the computed channel declares; a `delta` or `rolling` whose
/// input has another unit than the one declared. Returns what each one's
/// inputs give (for those that declare none).
fn check_units(cx: &mut Cx, plan: &Plan, plans: &[ComputePlan]) -> Vec<Option<String>> {
    let mut found: Vec<Option<String>> = Vec::with_capacity(plans.len());
    for p in plans {
        let path = key("compute", &p.channel);
        let units: Vec<Option<&str>> = p.inputs.iter().map(|i| unit_of(plan, plans, i)).collect();
        let result = match &p.kind {
            ComputeKind::Expr { expr, .. } => {
                let Ok(e) = Expr::parse(expr) else {
                    found.push(None);
                    continue;
                };
                match e.unit(&units) {
                    Ok(u) => u,
                    Err(err) => {
                        let at = expr_span(cx, &key(&path, "expr"), expr, err.at);
                        let mut d =
                            super::Diagnostic::error(Code::UnitMismatch, format!("the expression {}", err.message))
                                .at(at)
                                .path(&key(&path, "expr"));
                        d.note = Some(
                            "units are compared as written; `+`, `-`, comparisons, min, max, clamp and if need equal units"
                                .into(),
                        );
                        cx.diags.push(d);
                        None
                    }
                }
            }
            ComputeKind::Delta { .. } | ComputeKind::Rolling { .. } => units[0].map(str::to_string),
            ComputeKind::Rate { .. } | ComputeKind::Integrate { .. } => None,
        };
        if let (Some(declared), Some(result)) = (&p.unit, &result) {
            if declared != result {
                cx.err(
                    Code::UnitMismatch,
                    &key(&path, "unit"),
                    format!("`{}` is declared `{declared}`, but its inputs give `{result}`", p.channel),
                );
            }
        }
        found.push(result);
    }
    found
}
