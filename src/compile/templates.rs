//! Templates and expressions: compiled and rendered against a sample record
//! at validate time, with strict undefined, so that a typo is a spec error
//! rather than a dropped notification at 3 a.m.

use minijinja::{Environment, UndefinedBehavior, Value};

use super::diag::Code;
use super::Cx;

/// Most template instructions one render may execute.
pub const FUEL: u64 = 50_000;

/// The environment every template of a pipeline is rendered in.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    env
}

/// A record with every field a template may use: the union of reading,
/// anomaly and alert fields. At run time absent fields are `none`.
pub fn sample_record(channel: &str) -> Value {
    Value::from_serialize(serde_json::json!({
        "kind": "reading",
        "ts": "2026-01-01T00:00:00.000Z",
        "channel": channel,
        "value": 81.25,
        "unit": "degC",
        "quality": "good",
        "flags": [],
        "source": "sample",
        "inputs": [],
        "voted_out": [],
        "detector": "sample",
        "method": "zscore",
        "score": 4.2,
        "expected": 80.0,
        "threshold": 4.0,
        "rule": "sample",
        "state": "firing",
        "severity": "warning",
        "title": "sample title",
        "body": "sample body",
        "fingerprint": "0000000000000000",
        "labels": {},
    }))
}

/// Checks a `when`-style expression.
pub(crate) fn check_expression(cx: &mut Cx, path: &str, expr: &str, ctx: &Value) {
    let env = environment();
    match env.compile_expression(expr) {
        Err(e) => {
            cx.err(Code::Template, path, format!("the expression does not compile: {}", describe(&e)));
        }
        Ok(compiled) => {
            if let Err(e) = compiled.eval(ctx) {
                cx.err(
                    Code::TemplateRender,
                    path,
                    format!("the expression fails on a sample record: {}", describe(&e)),
                )
                .note = Some(note_fields());
            }
        }
    }
}

/// Checks a template; returns what it rendered for the sample.
pub(crate) fn check_template(cx: &mut Cx, path: &str, src: &str, ctx: &Value) -> Option<String> {
    let env = environment();
    match env.template_from_str(src) {
        Err(e) => {
            cx.err(Code::Template, path, format!("the template does not compile: {}", describe(&e)));
            None
        }
        Ok(t) => match t.render(ctx) {
            Ok(s) => Some(s),
            Err(e) => {
                cx.err(
                    Code::TemplateRender,
                    path,
                    format!("the template fails on a sample record: {}", describe(&e)),
                )
                .note = Some(note_fields());
                None
            }
        },
    }
}

/// A channel-name template over MQTT topic levels (`plant.{{ topic[1] }}.temp`).
pub(crate) fn check_channel_template(cx: &mut Cx, path: &str, src: &str, filter: &str) {
    let levels: Vec<String> =
        filter.split('/').map(|l| if l == "+" || l == "#" { "x".to_string() } else { l.to_string() }).collect();
    let ctx = Value::from_serialize(serde_json::json!({ "topic": levels }));
    if let Some(name) = check_template(cx, path, src, &ctx) {
        if let Err(why) = super::check_channel_name(&name) {
            cx.err(Code::InvalidValue, path, format!("renders `{name}`, which is not a channel name: {why}"));
        }
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(d) = e.detail() {
        s += ": ";
        s += d;
    }
    s
}

fn note_fields() -> String {
    "records have: kind, ts, channel, value, unit, quality, flags, source; anomalies add detector, method, score, expected, threshold; alerts add rule, state, severity, title, body, fingerprint, labels".into()
}
