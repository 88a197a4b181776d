//! Template and expression checks at compile time: each is compiled and
//! rendered against a sample record in the run-time environment
//! ([`crate::model::template`]), with strict undefined, so that a typo is a
//! spec error rather than a dropped notification at 3 a.m.

use minijinja::Value;

use super::diag::Code;
use super::Cx;
use crate::model::channel::check_channel_name;
use crate::model::template::{describe, environment, json_environment, looks_json, render_capped};

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
    let env = if looks_json(src) { json_environment() } else { environment() };
    match env.template_from_str(src) {
        Err(e) => {
            cx.err(Code::Template, path, format!("the template does not compile: {}", describe(&e)));
            None
        }
        Ok(_) => match render_capped(&env, src, ctx) {
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
        if let Err(why) = check_channel_name(&name) {
            cx.err(Code::InvalidValue, path, format!("renders `{name}`, which is not a channel name: {why}"));
        }
    }
}

fn note_fields() -> String {
    "records have: kind, ts, channel, value, unit, quality, flags, source; anomalies add detector, method, score, expected, threshold; alerts add rule, state, severity, title, body, fingerprint, labels, recent (the channel's last values), since, firing_for (seconds)".into()
}
