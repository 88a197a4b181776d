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
        let (kind, subject) = match f {
            ForwardSpec::Nats(n) => {
                let (kind, prefix) = nats(cx, &path, n);
                (kind, format!("{prefix}.{site}.{gateway}"))
            }
            ForwardSpec::Mqtt(m) => {
                let (kind, prefix) = mqtt(cx, &path, m, &site, &gateway, id);
                (kind, format!("{prefix}/{site}/{gateway}"))
            }
        };
        let n = f.common();
        let records = n.records.clone().unwrap_or_else(|| RecordKind::ALL.to_vec());
        if records.is_empty() {
            cx.err(
                Code::InvalidValue,
                &key(&path, "records"),
                "the target sends nothing; leave `records` out for all kinds",
            );
        }
        if let Some(stored) = spec.store.as_ref().and_then(|s| s.records.as_ref()) {
            for k in records.iter().filter(|k| !stored.contains(k)) {
                cx.err(
                    Code::Conflict,
                    &key(&path, "records"),
                    format!(
                        "the store does not keep `{}` records (`store.records`): the store is the outbox",
                        k.as_str()
                    ),
                );
            }
        }
        for (i, c) in n.channels.iter().enumerate() {
            check_glob_reference(cx, &super::diag_index(&key(&path, "channels"), i), c, &channels, closed);
        }
        let m = n.message;
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
        let max_in_flight = if matches!(f, ForwardSpec::Mqtt(_)) { 65_535 } else { 4096 };
        let in_flight = n.in_flight.unwrap_or(16);
        if !(1..=max_in_flight).contains(&in_flight) {
            cx.err(Code::InvalidQuantity, &key(&path, "in_flight"), format!("between 1 and {max_in_flight} messages"));
        }
        let replay_rate = cx.rate(&key(&path, "replay_rate"), n.replay_rate);
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
            subject,
            records,
            channels: n.channels.to_vec(),
            max_records: max_records.clamp(1, 1_000_000),
            max_bytes: max_bytes as usize,
            compression: m.compression,
            in_flight: in_flight.clamp(1, max_in_flight),
            ack_timeout: cx.positive_duration(&key(&path, "ack_timeout"), n.ack_timeout, Duration::from_secs(5)),
            max_age,
            replay_rate,
        });
    }
}

/// The NATS side of a target, and its subject prefix.
fn nats(cx: &mut Cx, path: &str, n: &NatsForwardSpec) -> (ForwardTarget, String) {
    let conn = super::nats::connection(cx, path, &super::nats::login_of!(n));
    let prefix = n.prefix.clone().unwrap_or_else(|| "eg".into());
    if prefix.split('.').any(|t| !is_id(t)) {
        cx.err(Code::InvalidId, &key(path, "prefix"), format!("`{prefix}` is not a subject prefix")).note =
            Some("subject tokens of letters, digits, `_` or `-`, joined by dots (no wildcards)".into());
    }
    if let Some(s) = &n.stream {
        super::nats::check_stream(cx, &key(path, "stream"), s);
    }
    (ForwardTarget::Nats(NatsTargetPlan { conn, stream: n.stream.clone() }), prefix)
}

/// The MQTT side of a target, and its topic prefix.
fn mqtt(cx: &mut Cx, path: &str, m: &MqttForwardSpec, site: &str, gateway: &str, id: &str) -> (ForwardTarget, String) {
    super::sources::check_mqtt_url(cx, &key(path, "url"), &m.url);
    let prefix = m.prefix.clone().unwrap_or_else(|| "eg".into());
    if prefix.is_empty() || prefix.split('/').any(|l| l.is_empty() || l.contains(['+', '#'])) {
        cx.err(Code::InvalidId, &key(path, "prefix"), format!("`{prefix}` is not a topic prefix")).note =
            Some("topic levels joined by `/`, none empty, no `+` or `#`".into());
    }
    let qos = m.qos.unwrap_or(1);
    if !(1..=2).contains(&qos) {
        cx.err(
            Code::InvalidValue,
            &key(path, "qos"),
            "QoS 1 or 2: a forward target waits for the broker's acknowledgement",
        );
    }
    if m.username.is_some() != m.password.is_some() {
        let missing = if m.username.is_some() { "password" } else { "username" };
        cx.err_key(Code::MissingField, path, format!("`username` and `password` go together; `{missing}` is missing"));
    }
    let username = m.username.as_ref().and_then(|s| cx.secret(&key(path, "username"), s));
    let password = m.password.as_ref().and_then(|s| cx.secret(&key(path, "password"), s));
    let tls = m.tls.as_ref().map(|t| cx.tls(&key(path, "tls"), t));
    let target = MqttTargetPlan {
        url: m.url.clone(),
        client_id: m.client_id.clone().unwrap_or_else(|| format!("edgeguard-{site}-{gateway}-{id}")),
        username,
        password,
        tls,
        qos: qos.clamp(1, 2),
        keepalive: cx.positive_duration(&key(path, "keepalive"), m.keepalive.as_deref(), Duration::from_secs(30)),
    };
    (ForwardTarget::Mqtt(target), prefix)
}
