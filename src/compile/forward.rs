//! Compiles `forward`: targets the store's commits are sent on to.

use std::time::Duration;

use super::diag::Code;
use super::plan::*;
use super::stages::{check_glob_reference, closed_world};
use super::{is_id, key, Cx};
use crate::spec::*;

/// Largest message body accepted in a spec: NATS servers refuse payloads
/// over `max_payload` (1 MB by default, at most 64 MB).
const MAX_BODY: u64 = 64 * 1024 * 1024;

pub(super) fn compile_forward(cx: &mut Cx, spec: &Spec, plan: &mut Plan) {
    if spec.forward.is_empty() {
        return;
    }
    if plan.identity.is_none() {
        cx.err_key(Code::MissingField, "forward", "forwarding needs an `identity`: it names the gateway's subjects")
            .hint = Some("add `identity: {site: berlin, gateway: gw-017}`".into());
    }
    if spec.store.is_none() {
        cx.err_key(Code::Conflict, "forward", "forwarding needs a `store`: the store is the outbox").hint =
            Some("add `store: {path: plant.duckdb}`".into());
    }
    let channels: Vec<String> = plan.produced_channels().into_iter().map(str::to_string).collect();
    let closed = closed_world(spec, plan);
    let (site, gateway) = plan.identity.as_ref().map_or(("site", "gateway"), |i| (&i.site, &i.gateway));
    let (site, gateway) = (site.to_string(), gateway.to_string());
    for (id, f) in &spec.forward {
        let path = key("forward", id);
        cx.check_id(&path, id, "forward target");
        let ForwardSpec::Nats(n) = f;
        let (kind, prefix) = nats(cx, &path, n);
        let records = n.records.clone().unwrap_or_else(|| ForwardKind::ALL.to_vec());
        if records.is_empty() {
            cx.err(
                Code::InvalidValue,
                &key(&path, "records"),
                "the target sends nothing; leave `records` out for all kinds",
            );
        }
        for (i, c) in n.channels.iter().enumerate() {
            check_glob_reference(cx, &super::diag_index(&key(&path, "channels"), i), c, &channels, closed);
        }
        let m = &n.message;
        let max_records = m.max_records.unwrap_or(1000);
        if !(1..=1_000_000).contains(&max_records) {
            cx.err(Code::InvalidQuantity, &key(&key(&path, "message"), "max_records"), "between 1 and 1000000 records");
        }
        let bytes_path = key(&key(&path, "message"), "max_bytes");
        let max_bytes = match m.max_bytes.as_deref().map(crate::model::quantity::parse_bytes) {
            None => 256 * 1024,
            Some(Ok(b)) if (1024..=MAX_BODY).contains(&b) => b,
            Some(Ok(_)) => {
                cx.err(Code::InvalidQuantity, &bytes_path, "between 1KiB and 64MiB");
                256 * 1024
            }
            Some(Err(e)) => {
                cx.err(Code::InvalidQuantity, &bytes_path, e);
                256 * 1024
            }
        };
        let in_flight = n.in_flight.unwrap_or(16);
        if !(1..=4096).contains(&in_flight) {
            cx.err(Code::InvalidQuantity, &key(&path, "in_flight"), "between 1 and 4096 messages");
        }
        let replay_rate = cx.rate(&key(&path, "replay_rate"), n.replay_rate.as_deref());
        if replay_rate.is_some_and(|r| r < 1.0) {
            cx.err(Code::InvalidQuantity, &key(&path, "replay_rate"), "replay at least one record per second");
        }
        let max_age = cx.positive_duration(
            &key(&key(&path, "backlog"), "max_age"),
            n.backlog.max_age.as_deref(),
            Duration::from_secs(7 * 86_400),
        );
        plan.forward.push(ForwardPlan {
            id: id.clone(),
            kind,
            subject: format!("{prefix}.{site}.{gateway}"),
            records,
            channels: n.channels.clone(),
            max_records: max_records.clamp(1, 1_000_000),
            max_bytes: max_bytes as usize,
            compression: m.compression,
            in_flight: in_flight.clamp(1, 4096),
            ack_timeout: cx.positive_duration(
                &key(&path, "ack_timeout"),
                n.ack_timeout.as_deref(),
                Duration::from_secs(5),
            ),
            max_age,
            replay_rate,
        });
    }
}

/// The NATS side of a target, and its subject prefix.
fn nats(cx: &mut Cx, path: &str, n: &NatsForwardSpec) -> (ForwardTarget, String) {
    let url_path = key(path, "url");
    let urls = n.url.list();
    if urls.is_empty() {
        cx.err(Code::InvalidValue, &url_path, "no server URL: write `nats://host:4222` or a list");
    }
    for (i, u) in urls.iter().enumerate() {
        let p = if matches!(n.url, Urls::Many(_)) { super::diag_index(&url_path, i) } else { url_path.clone() };
        match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "nats" | "tls") && url.host_str().is_some_and(|h| !h.is_empty()) => {
                if url.password().is_some() || !url.username().is_empty() {
                    cx.err(
                        Code::InlineSecret,
                        &p,
                        "the URL carries credentials; use `username`/`password` or `token` from a secret",
                    );
                }
            }
            _ => {
                cx.err(Code::InvalidAddress, &p, format!("`{u}` is not `nats://host:port` or `tls://host:port`"));
            }
        }
    }
    let secret = |cx: &mut Cx, k: &str, s: &Option<SecretSpec>| s.as_ref().and_then(|s| cx.secret(&key(path, k), s));
    let credentials = secret(cx, "credentials", &n.credentials);
    let nkey = secret(cx, "nkey", &n.nkey);
    let username = secret(cx, "username", &n.username);
    let password = secret(cx, "password", &n.password);
    let token = secret(cx, "token", &n.token);
    let given: Vec<&str> = [
        ("credentials", n.credentials.is_some()),
        ("nkey", n.nkey.is_some()),
        ("username", n.username.is_some()),
        ("token", n.token.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(k, _)| *k)
    .collect();
    if given.len() > 1 {
        cx.err_key(
            Code::Conflict,
            &key(path, given[1]),
            format!("`{}` and `{}` are two ways to log in; keep one", given[0], given[1]),
        );
    }
    if n.username.is_some() != n.password.is_some() {
        let missing = if n.username.is_some() { "password" } else { "username" };
        cx.err_key(Code::MissingField, path, format!("`username` and `password` go together; `{missing}` is missing"));
    }
    let auth = match (credentials, nkey, username.zip(password), token) {
        (Some(c), ..) => NatsAuth::Credentials(c),
        (_, Some(k), ..) => NatsAuth::Nkey(k),
        (_, _, Some((u, p)), _) => NatsAuth::UserPassword(u, p),
        (.., Some(t)) => NatsAuth::Token(t),
        _ => NatsAuth::None,
    };
    let prefix = n.prefix.clone().unwrap_or_else(|| "eg".into());
    if prefix.split('.').any(|t| !is_id(t)) {
        cx.err(Code::InvalidId, &key(path, "prefix"), format!("`{prefix}` is not a subject prefix")).note =
            Some("subject tokens of letters, digits, `_` or `-`, joined by dots (no wildcards)".into());
    }
    if let Some(s) = &n.stream {
        if !is_id(s) {
            cx.err(Code::InvalidId, &key(path, "stream"), format!("`{s}` is not a stream name")).note =
                Some("1–64 letters, digits, `_` or `-`".into());
        }
    }
    let tls = n.tls.as_ref().map(|t| cx.tls(&key(path, "tls"), t));
    let target =
        NatsTargetPlan { urls: urls.iter().map(|u| u.to_string()).collect(), auth, tls, stream: n.stream.clone() };
    (ForwardTarget::Nats(target), prefix)
}
