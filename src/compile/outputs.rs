//! Compiles `notifiers`, `serve` and `backup`.

use std::time::Duration;

use super::diag::Code;
use super::plan::*;
use super::{key, templates, Cx};
use crate::spec::*;

pub(super) fn compile_outputs(cx: &mut Cx, spec: &Spec, plan: &mut Plan) {
    let sample = crate::model::template::sample_record("sample.channel");
    for (id, n) in &spec.notifiers {
        let path = key("notifiers", id);
        cx.check_id(&path, id, "notifier");
        let kind = match n {
            NotifierSpec::Stdout(_) => NotifierKind::Stdout,
            NotifierSpec::File(f) => {
                let template = f
                    .template
                    .clone()
                    .unwrap_or_else(|| "{{ ts }} {{ severity }} {{ rule }} {{ state }}: {{ title }}".into());
                if f.template.is_some() {
                    templates::check_template(cx, &key(&path, "template"), &template, &sample);
                }
                NotifierKind::File { path: cx.path(&f.path), format: f.format, template }
            }
            NotifierSpec::Exec(e) => {
                if e.command.is_empty() {
                    cx.err(Code::InvalidValue, &key(&path, "command"), "the command is empty: write [program, arg, …]");
                }
                for (i, arg) in e.command.iter().enumerate() {
                    templates::check_template(cx, &super::diag_index(&key(&path, "command"), i), arg, &sample);
                }
                let env = e
                    .env
                    .iter()
                    .filter_map(|(k, s)| cx.secret(&key(&key(&path, "env"), k), s).map(|r| (k.clone(), r)))
                    .collect();
                let max_concurrent = e.max_concurrent.unwrap_or(4);
                if max_concurrent == 0 {
                    cx.err(Code::InvalidValue, &key(&path, "max_concurrent"), "max_concurrent is at least 1");
                }
                NotifierKind::Exec {
                    command: e.command.clone(),
                    env,
                    timeout: cx.positive_duration(
                        &key(&path, "timeout"),
                        e.timeout.as_deref(),
                        Duration::from_secs(10),
                    ),
                    max_concurrent: max_concurrent.max(1),
                }
            }
            NotifierSpec::Webhook(w) => {
                check_http_url(cx, &key(&path, "url"), &w.url);
                if let Some(body) = &w.body {
                    if let Some(out) = templates::check_template(cx, &key(&path, "body"), body, &sample) {
                        if crate::model::template::looks_json(body)
                            && serde_json::from_str::<serde_json::Value>(&out).is_err()
                        {
                            cx.err(
                                Code::TemplateRender,
                                &key(&path, "body"),
                                "the body looks like JSON but renders invalid JSON on a sample record",
                            )
                            .hint = Some("insert values as `{{ value }}`: JSON bodies escape them as JSON".into());
                        }
                    }
                }
                let headers = w
                    .headers
                    .iter()
                    .filter_map(|(k, s)| cx.secret(&key(&key(&path, "headers"), k), s).map(|r| (k.clone(), r)))
                    .collect();
                NotifierKind::Webhook {
                    url: w.url.clone(),
                    body: w.body.clone(),
                    headers,
                    timeout: cx.positive_duration(
                        &key(&path, "timeout"),
                        w.timeout.as_deref(),
                        Duration::from_secs(10),
                    ),
                    retries: w.retries.unwrap_or(3),
                }
            }
            NotifierSpec::Mqtt(m) => {
                match url::Url::parse(&m.url) {
                    Ok(u) if matches!(u.scheme(), "mqtt" | "mqtts") && u.host_str().is_some() => {}
                    _ => {
                        cx.err(
                            Code::InvalidAddress,
                            &key(&path, "url"),
                            format!("`{}` is not `mqtt://host:port`", m.url),
                        );
                    }
                }
                templates::check_template(cx, &key(&path, "topic"), &m.topic, &sample);
                if let Some(p) = &m.payload {
                    templates::check_template(cx, &key(&path, "payload"), p, &sample);
                }
                let qos = m.qos.unwrap_or(1);
                if qos > 2 {
                    cx.err(Code::InvalidValue, &key(&path, "qos"), "QoS is 0, 1 or 2");
                }
                NotifierKind::Mqtt {
                    url: m.url.clone(),
                    topic: m.topic.clone(),
                    payload: m.payload.clone(),
                    qos,
                    retain: m.retain.unwrap_or(false),
                    username: m.username.as_ref().and_then(|s| cx.secret(&key(&path, "username"), s)),
                    password: m.password.as_ref().and_then(|s| cx.secret(&key(&path, "password"), s)),
                    tls: m.tls.as_ref().map(|t| cx.tls(&key(&path, "tls"), t)),
                }
            }
            NotifierSpec::Email(e) => email(cx, &path, e, &sample),
        };
        let labels = super::quiet::all_labels(spec);
        let group = n.group().map(|g| super::quiet::group(cx, &key(&path, "group"), g, &labels));
        if let (NotifierSpec::Stdout(_), Some(_)) = (n, &group) {
            cx.err_key(
                Code::Useless,
                &key(&path, "group"),
                "stdout prints every alert record as it happens; a group changes nothing",
            )
            .hint = Some("group a notifier that sends (email, webhook, …)".into());
        }
        plan.notifiers.push(NotifierPlan { id: id.clone(), kind, group });
    }

    if let Some(s) = &spec.serve {
        let listen_text = s.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen = match listen_text.parse::<std::net::SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                cx.err(Code::InvalidAddress, "serve.listen", format!("`{listen_text}` is not `ip:port`"));
                std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        let token = s.token.as_ref().and_then(|t| cx.secret("serve.token", t));
        if !listen.ip().is_loopback() && s.token.is_none() {
            cx.err(Code::Conflict, "serve.listen", format!("listening on {listen} (not loopback) needs a `token`"))
                .hint = Some("add `token: {env: EDGEGUARD_TOKEN}`, or listen on 127.0.0.1".into());
        }
        let tls = s.tls.as_ref().map(|t| cx.tls("serve.tls", t));
        if let Some(t) = &tls {
            if t.cert.is_none() || t.key.is_none() {
                cx.err(Code::MissingField, "serve.tls", "serving TLS needs both `cert` and `key`");
            }
        }
        let down_after = cx.positive_duration("serve.down_after", s.down_after.as_deref(), ServePlan::DOWN_AFTER);
        let metric_channels = s.metric_channels.unwrap_or(ServePlan::METRIC_CHANNELS);
        plan.serve = Some(ServePlan { listen, token, tls, cors: s.cors.clone(), down_after, metric_channels });
    }

    if let Some(b) = &spec.backup {
        let keep = b.keep.unwrap_or(7);
        if keep == 0 {
            cx.err(Code::InvalidValue, "backup.keep", "keep at least one backup");
        }
        if let Some(s) = &b.schedule {
            if let Err(why) = check_cron(s) {
                cx.err(Code::InvalidValue, "backup.schedule", format!("`{s}` is not a cron schedule: {why}")).hint =
                    Some("five fields: minute hour day-of-month month day-of-week, like `0 3 * * *`".into());
            }
        }
        if spec.store.is_none() {
            cx.err_key(Code::Conflict, "backup", "backups need a `store`");
        }
        plan.backup = Some(BackupPlan {
            dir: cx.path(&b.dir),
            keep: keep.max(1),
            format: b.format,
            schedule: b.schedule.clone(),
        });
    }
}

fn email(cx: &mut Cx, path: &str, e: &EmailNotifierSpec, sample: &minijinja::Value) -> NotifierKind {
    let (mut host, mut port, mut implicit_tls) = (String::new(), 0, true);
    match url::Url::parse(&e.url) {
        Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some_and(|h| !h.is_empty()) => {
            implicit_tls = u.scheme() == "smtps";
            host = u.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
            port = u.port().unwrap_or(if implicit_tls { 465 } else { 587 });
            if u.password().is_some() || !u.username().is_empty() {
                cx.err(
                    Code::InlineSecret,
                    &key(path, "url"),
                    "the URL carries a login; put it in `username` and `password` from secrets",
                );
            }
        }
        _ => {
            cx.err(
                Code::InvalidAddress,
                &key(path, "url"),
                format!("`{}` is not `smtps://host:465` (TLS) or `smtp://host:587` (STARTTLS)", e.url),
            );
        }
    }
    if !is_address(&e.from) {
        cx.err(Code::InvalidAddress, &key(path, "from"), format!("`{}` is not an email address", e.from));
    }
    if e.to.is_empty() {
        cx.err(Code::MissingField, &key(path, "to"), "an email needs at least one recipient");
    }
    for (i, t) in e.to.iter().enumerate() {
        let at = super::diag_index(&key(path, "to"), i);
        if let Some(out) = templates::check_template(cx, &at, t, sample) {
            if !out.is_empty() && !is_address(&out) {
                cx.err(
                    Code::InvalidAddress,
                    &at,
                    format!("`{out}` (rendered on a sample record) is not an email address"),
                );
            }
        }
    }
    let subject = e.subject.clone().unwrap_or_else(|| "[{{ severity }}] {{ title }}".into());
    let body = e.body.clone().unwrap_or_else(|| "{{ body }}".into());
    for (k, given, t) in [("subject", e.subject.is_some(), &subject), ("body", e.body.is_some(), &body)] {
        if given {
            templates::check_template(cx, &key(path, k), t, sample);
        }
    }
    if let Some(h) = &e.html {
        templates::check_template(cx, &key(path, "html"), h, sample);
    }
    if e.password.is_some() != e.username.is_some() {
        let (has, lacks) = if e.password.is_some() { ("password", "username") } else { ("username", "password") };
        cx.err_key(Code::MissingField, path, format!("a `{has}` needs a `{lacks}`"));
    }
    NotifierKind::Email {
        host,
        port,
        implicit_tls,
        from: e.from.clone(),
        to: e.to.clone(),
        subject,
        body,
        html: e.html.clone(),
        username: e.username.as_ref().and_then(|s| cx.secret(&key(path, "username"), s)),
        password: e.password.as_ref().and_then(|s| cx.secret(&key(path, "password"), s)),
        tls: e.tls.as_ref().map(|t| cx.tls(&key(path, "tls"), t)),
        timeout: cx.positive_duration(&key(path, "timeout"), e.timeout.as_deref(), Duration::from_secs(30)),
        retries: e.retries.unwrap_or(3),
    }
}

/// `local@domain`, without spaces, angle brackets or line breaks (what an
/// SMTP envelope takes as it is).
pub fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

fn check_http_url(cx: &mut Cx, path: &str, text: &str) {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            if u.password().is_some() {
                cx.err(
                    Code::InlineSecret,
                    path,
                    "the URL carries a password; put credentials in `headers` from a secret",
                );
            }
        }
        Ok(_) => {
            cx.err(Code::InvalidAddress, path, "a webhook URL is `https://…` (or `http://` for a local receiver)");
        }
        Err(e) => {
            cx.err(Code::InvalidAddress, path, format!("`{text}` is not a URL: {e}"));
        }
    }
}

/// Five cron fields, each `*`, numbers, ranges, lists and steps within bounds.
pub fn check_cron(s: &str) -> Result<(), String> {
    super::cron::Schedule::parse(s).map(|_| ())
}
