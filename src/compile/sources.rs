//! Compiles the `sources` section: addresses, Modbus points and request
//! planning, MQTT topics, serial line formats and simulated signals.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::diag::Code;
use super::plan::*;
use super::{key, templates, Cx};
use crate::spec::*;

pub(super) fn compile_sources(cx: &mut Cx, spec: &Spec) -> Vec<SourcePlan> {
    let mut out = Vec::new();
    // channel → where it was first produced, to find duplicates.
    let mut seen: HashMap<String, String> = HashMap::new();
    for (id, source) in &spec.sources {
        let path = key("sources", id);
        cx.check_id(&path, id, "source");
        let kind = match source {
            SourceSpec::Modbus(m) => SourceKind::Modbus(modbus(cx, &path, m, &spec.channels)),
            SourceSpec::Mqtt(m) => SourceKind::Mqtt(mqtt(cx, &path, id, &spec.name, m)),
            SourceSpec::Nats(n) => SourceKind::Nats(nats(cx, &path, n)),
            SourceSpec::Serial(s) => SourceKind::Serial(serial(cx, &path, s)),
            SourceSpec::Simulate(s) => SourceKind::Simulate(simulate(cx, &path, s)),
        };
        let produced: Vec<(String, String)> =
            kind.channels().into_iter().map(|(c, at)| (c.to_string(), format!("{path}.{at}"))).collect();
        let mut own: HashSet<&str> = HashSet::new();
        for (channel, at) in &produced {
            // Several Modbus points may name one channel only if they are the
            // same point read twice, which is never useful: one producer each.
            if let Some(first) = seen.get(channel) {
                if own.contains(channel.as_str()) || first != at {
                    cx.err(Code::DuplicateChannel, at, format!("channel `{channel}` is already produced at {first}"));
                }
            } else {
                seen.insert(channel.clone(), at.clone());
            }
            own.insert(channel);
        }
        out.push(SourcePlan { id: id.clone(), kind });
    }
    out
}

#[allow(clippy::too_many_arguments)] // the fields of a serial line, shared by two source kinds
fn serial_line(
    cx: &mut Cx,
    path: &str,
    device: &str,
    baud: Option<u32>,
    parity: Option<Parity>,
    data_bits: Option<u8>,
    stop_bits: Option<u8>,
    default_parity: Parity,
) -> SerialLine {
    if device.trim().is_empty() {
        cx.err(Code::InvalidAddress, &key(path, "device"), "the serial device is empty");
    }
    let baud = baud.unwrap_or(9600);
    if !(50..=4_000_000).contains(&baud) {
        cx.err(Code::InvalidQuantity, &key(path, "baud"), format!("{baud} is not a usable baud rate"));
    }
    let data_bits = data_bits.unwrap_or(8);
    if !(5..=8).contains(&data_bits) {
        cx.err(Code::InvalidQuantity, &key(path, "data_bits"), "data bits are 5, 6, 7 or 8");
    }
    let stop_bits = stop_bits.unwrap_or(1);
    if !(1..=2).contains(&stop_bits) {
        cx.err(Code::InvalidQuantity, &key(path, "stop_bits"), "stop bits are 1 or 2");
    }
    SerialLine { device: device.to_string(), baud, parity: parity.unwrap_or(default_parity), data_bits, stop_bits }
}

fn host_port(cx: &mut Cx, path: &str, text: &str, default_port: u16) -> String {
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => (h, Some(p)),
        _ => (text, None),
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                cx.err(Code::InvalidAddress, path, format!("`{p}` is not a port number in `{text}`"));
                default_port
            }
        },
    };
    let host_ok = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !host_ok {
        cx.err(Code::InvalidAddress, path, format!("`{text}` is not `host:port`"));
    }
    format!("{host}:{port}")
}

/// Registers a point covers, and whether its type fits its table and order.
fn point_shape(cx: &mut Cx, path: &str, p: &PointSpec) -> (PointType, ByteOrder, u16) {
    let is_bits = matches!(p.table, Table::Coil | Table::Discrete);
    let kind = p.kind.unwrap_or(if is_bits || p.bit.is_some() { PointType::Bool } else { PointType::U16 });
    if is_bits && kind != PointType::Bool {
        cx.err(
            Code::ModbusPoint,
            &key(path, "type"),
            format!("a {:?} is one bit: its type is `bool`", p.table).to_lowercase(),
        );
    }
    if let Some(bit) = p.bit {
        if is_bits {
            cx.err(
                Code::ModbusPoint,
                &key(path, "bit"),
                "`bit` picks a bit of a register; coils and discrete inputs are bits already",
            );
        } else if bit > 15 {
            cx.err(Code::ModbusPoint, &key(path, "bit"), format!("bit {bit} does not exist; a register has bits 0–15"));
        }
        if kind != PointType::Bool {
            cx.err(Code::ModbusPoint, &key(path, "type"), "a point with `bit` has type `bool`");
        }
    } else if kind == PointType::Bool && !is_bits {
        cx.err(Code::ModbusPoint, &key(path, "type"), "a `bool` from a register needs `bit: 0..15`");
    }
    let words: u16 = match kind {
        PointType::Bool => 1,
        PointType::U16 | PointType::I16 | PointType::F16 => 1,
        PointType::U32 | PointType::I32 | PointType::F32 => 2,
        PointType::U64 | PointType::I64 | PointType::F64 => 4,
        PointType::String => match p.length {
            Some(n) if (1..=125).contains(&n) => n,
            Some(n) => {
                cx.err(
                    Code::ModbusPoint,
                    &key(path, "length"),
                    format!("a string of {n} registers does not fit one request (1–125)"),
                );
                1
            }
            None => {
                cx.err(Code::ModbusPoint, &key(path, "length"), "a `string` needs `length` (in registers)");
                1
            }
        },
    };
    if p.length.is_some() && kind != PointType::String {
        cx.err(Code::ModbusPoint, &key(path, "length"), "`length` is for `string` points");
    }
    let wide = words >= 2 && kind != PointType::String;
    let order = match (p.order, wide) {
        (None, true) => ByteOrder::ABCD,
        (None, false) => ByteOrder::AB,
        (Some(o @ (ByteOrder::AB | ByteOrder::BA)), false) => o,
        (Some(o @ (ByteOrder::ABCD | ByteOrder::CDAB | ByteOrder::BADC | ByteOrder::DCBA)), true) => o,
        (Some(o), _) => {
            let allowed = if wide { "ABCD, CDAB, BADC or DCBA" } else { "AB or BA" };
            cx.err(
                Code::ModbusPoint,
                &key(path, "order"),
                format!("order {o:?} does not fit a {} point: use {allowed}", format!("{kind:?}").to_lowercase()),
            );
            if wide {
                ByteOrder::ABCD
            } else {
                ByteOrder::AB
            }
        }
    };
    (kind, order, words)
}

fn modbus(
    cx: &mut Cx,
    path: &str,
    m: &ModbusSourceSpec,
    channels: &indexmap::IndexMap<String, ChannelSpec>,
) -> ModbusPlan {
    let (address, serial) = match m.transport {
        ModbusTransport::Tcp | ModbusTransport::RtuOverTcp => {
            if m.device.is_some() {
                cx.err(
                    Code::Conflict,
                    &key(path, "device"),
                    "`device` is for `transport: rtu`; TCP transports use `address`",
                );
            }
            match &m.address {
                Some(a) => (Some(host_port(cx, &key(path, "address"), a, 502)), None),
                None => {
                    cx.err_key(Code::MissingField, path, "a TCP Modbus source needs `address: host:port`");
                    (None, None)
                }
            }
        }
        ModbusTransport::Rtu => {
            if m.address.is_some() {
                cx.err(Code::Conflict, &key(path, "address"), "`address` is for TCP transports; `rtu` uses `device`");
            }
            match &m.device {
                Some(d) => {
                    (None, Some(serial_line(cx, path, d, m.baud, m.parity, m.data_bits, m.stop_bits, Parity::Even)))
                }
                None => {
                    cx.err_key(Code::MissingField, path, "an RTU Modbus source needs `device: /dev/tty…`");
                    (None, None)
                }
            }
        }
    };
    let rtu = m.transport != ModbusTransport::Tcp;
    let interval = cx.positive_duration(&key(path, "interval"), m.interval.as_deref(), Duration::from_secs(1));
    let timeout = cx.positive_duration(&key(path, "timeout"), m.timeout.as_deref(), Duration::from_secs(1));
    let pause = cx.duration(&key(path, "pause"), m.pause.as_deref(), Duration::ZERO);
    let base = m.address_base.unwrap_or(0);
    if base > 1 {
        cx.err(Code::InvalidValue, &key(path, "address_base"), "address_base is 0 or 1");
    }
    let unit_ok = |u: u16| if rtu { (1..=247).contains(&u) } else { u <= 255 };
    let default_unit = m.unit.unwrap_or(1);
    if !unit_ok(default_unit) {
        cx.err(
            Code::ModbusPoint,
            &key(path, "unit"),
            format!("unit id {default_unit} is outside {}", if rtu { "1–247" } else { "0–255" }),
        );
    }
    let mut points = Vec::with_capacity(m.points.len());
    let points_path = key(path, "points");
    for (i, p) in m.points.iter().enumerate() {
        let pp = super::diag_index(&points_path, i);
        cx.check_channel(&key(&pp, "channel"), &p.channel);
        let (kind, order, count) = point_shape(cx, &pp, p);
        let unit_id = p.unit_id.unwrap_or(default_unit);
        if p.unit_id.is_some() && !unit_ok(unit_id) {
            cx.err(
                Code::ModbusPoint,
                &key(&pp, "unit_id"),
                format!("unit id {unit_id} is outside {}", if rtu { "1–247" } else { "0–255" }),
            );
        }
        if base == 0 && matches!(p.table, Table::Holding | Table::Input) {
            let looks = match p.table {
                Table::Holding => (40001..=49999).contains(&p.address) || (400001..=465536).contains(&p.address),
                _ => (30001..=39999).contains(&p.address) || (300001..=365536).contains(&p.address),
            };
            if looks {
                let prefix = if p.table == Table::Holding { 4 } else { 3 };
                let offset = if p.address >= 100_000 {
                    p.address - prefix * 100_000 - 1
                } else {
                    p.address - prefix * 10_000 - 1
                };
                let d = cx.err(
                    Code::LooksOneBased,
                    &key(&pp, "address"),
                    format!("address {} looks like a \"{}xxxx\" register reference", p.address, prefix),
                );
                d.hint = Some(format!(
                    "the protocol address is probably {offset} (write that, or set `address_base: 1` and use {})",
                    offset + 1
                ));
            }
        }
        let address = if base == 1 {
            if p.address == 0 {
                cx.err(Code::ModbusPoint, &key(&pp, "address"), "with `address_base: 1` addresses start at 1");
            }
            p.address.saturating_sub(1)
        } else {
            p.address
        };
        let span = if kind == PointType::Bool && p.bit.is_none() { 1 } else { u64::from(count) };
        if u64::from(address) + span > 65_536 {
            cx.err(
                Code::ModbusPoint,
                &key(&pp, "address"),
                format!("address {address} + {span} runs past the end of the table (65535)"),
            );
        }
        let scale = p.scale.unwrap_or(1.0);
        if !scale.is_finite() || scale == 0.0 {
            cx.err(Code::InvalidValue, &key(&pp, "scale"), "scale must be a non-zero number");
        }
        if kind == PointType::String && (p.scale.is_some() || p.offset.is_some() || p.deadband.is_some()) {
            cx.err(Code::ModbusPoint, &pp, "a `string` point has no scale, offset or deadband");
        }
        let interval = cx.opt_duration(&key(&pp, "interval"), p.interval.as_deref());
        let heartbeat = heartbeat(cx, &pp, p, channels);
        points.push(PointPlan {
            channel: p.channel.clone(),
            unit_id: unit_id.min(255) as u8,
            table: p.table,
            address: address.min(65_535) as u16,
            kind,
            order,
            bit: p.bit,
            count,
            scale,
            offset: p.offset.unwrap_or(0.0),
            unit: p.unit.clone(),
            interval,
            deadband: p.deadband,
            heartbeat,
        });
    }
    check_overlaps(cx, &points_path, &points);
    let requests = plan_requests(&points, m.gap.unwrap_or(0), interval);
    let plan = ModbusPlan { transport: m.transport, address, serial, interval, timeout, pause, points, requests };
    if let Some(line) = &plan.serial {
        check_rtu_budget(cx, path, line, &plan);
    }
    plan
}

/// Points that share registers must cover exactly the same ones (the same
/// word under two scalings, or bits of one register); a partial overlap is
/// almost always a wrong address or type.
fn check_overlaps(cx: &mut Cx, path: &str, points: &[PointPlan]) {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by_key(|&i| (points[i].unit_id, points[i].table as u8, points[i].address));
    for w in idx.windows(2) {
        let (a, b) = (&points[w[0]], &points[w[1]]);
        if a.unit_id != b.unit_id || a.table != b.table {
            continue;
        }
        let a_end = u32::from(a.address) + u32::from(a.count);
        let same = a.address == b.address && a.count == b.count;
        if u32::from(b.address) < a_end && !same {
            let (first, second) = (w[0].min(w[1]), w[0].max(w[1]));
            let d = cx.err(
                Code::ModbusOverlap,
                &format!("{}.address", super::diag_index(path, second)),
                format!(
                    "`{}` ({} registers at {}) partly overlaps `{}` ({} at {})",
                    points[second].channel,
                    points[second].count,
                    points[second].address,
                    points[first].channel,
                    points[first].count,
                    points[first].address
                ),
            );
            d.hint = Some("points may share registers only when they cover exactly the same ones".into());
        }
    }
}

/// Merges points into as few reads as possible per poll interval, unit and
/// table: ranges that touch or are at most `gap` registers apart, up to 125
/// registers (2000 bits) per request. Points without their own interval poll
/// at `default`.
pub fn plan_requests(points: &[PointPlan], gap: u16, default: Duration) -> Vec<RequestPlan> {
    let every = |p: &PointPlan| p.interval.unwrap_or(default);
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by_key(|&i| {
        let p = &points[i];
        (every(p), p.unit_id, p.table as u8, p.address, p.count)
    });
    let mut out: Vec<RequestPlan> = Vec::new();
    for i in idx {
        let p = &points[i];
        let limit: u32 = if matches!(p.table, Table::Coil | Table::Discrete) { 2000 } else { 125 };
        let p_end = u32::from(p.address) + u32::from(p.count);
        if let Some(r) = out.last_mut() {
            let r_end = u32::from(r.address) + u32::from(r.count);
            let fits = r.interval == every(p)
                && r.unit_id == p.unit_id
                && r.table == p.table
                && u32::from(p.address) <= r_end + u32::from(gap)
                && p_end.max(r_end) - u32::from(r.address) <= limit;
            if fits {
                r.count = (p_end.max(r_end) - u32::from(r.address)) as u16;
                r.points.push(i);
                continue;
            }
        }
        out.push(RequestPlan {
            interval: every(p),
            unit_id: p.unit_id,
            table: p.table,
            address: p.address,
            count: p.count,
            points: vec![i],
        });
    }
    out
}

/// Seconds one read request and its response take on an RTU line: both
/// frames at the baud rate, with the 3.5-character silence after each (the
/// spec fixes it at 1.75 ms above 19200 baud) and the configured pause.
pub fn rtu_request_time(line: &SerialLine, r: &RequestPlan, pause: Duration) -> f64 {
    let char_s = line.char_secs();
    let silence = line.frame_silence().as_secs_f64();
    let data = match r.table {
        Table::Coil | Table::Discrete => usize::from(r.count).div_ceil(8),
        Table::Input | Table::Holding => 2 * usize::from(r.count),
    };
    // Request: unit, function, address, count, CRC = 8 bytes.
    // Response: unit, function, byte count, data, CRC = 5 + data bytes.
    let chars = (8 + 5 + data) as f64;
    chars * char_s + 2.0 * silence + pause.as_secs_f64()
}

/// The heartbeat of a point with a deadband: as given, else half its
/// channel's `stale`, else [`PointPlan::DEFAULT_HEARTBEAT`]. W104 when the
/// one given is not shorter than `stale` (the channel would go stale while
/// steady); W102 when there is no deadband to break.
fn heartbeat(
    cx: &mut Cx,
    pp: &str,
    p: &PointSpec,
    channels: &indexmap::IndexMap<String, ChannelSpec>,
) -> Option<Duration> {
    let given = cx.opt_duration(&key(pp, "heartbeat"), p.heartbeat.as_deref());
    if p.deadband.is_none() {
        if p.heartbeat.is_some() {
            cx.err_key(Code::Useless, &key(pp, "heartbeat"), "`heartbeat` has no effect without a `deadband`");
        }
        return None;
    }
    let rule = channels.get(&p.channel).or_else(|| {
        channels.iter().find_map(|(k, c)| {
            let m =
                crate::model::channel::is_glob(k).then(|| crate::model::channel::channel_matcher(k).ok()).flatten()?;
            m.is_match(&p.channel).then_some(c)
        })
    });
    let stale = rule.and_then(|c| c.stale.as_deref()).and_then(|s| crate::model::quantity::parse_duration(s).ok());
    if given.is_some_and(|h| h.is_zero()) {
        cx.err(Code::InvalidQuantity, &key(pp, "heartbeat"), "must be longer than zero");
        return None;
    }
    match (given, stale) {
        (Some(h), Some(stale)) if h >= stale => {
            let d = cx.err(
                Code::HeartbeatTooLong,
                &key(pp, "heartbeat"),
                format!(
                    "a steady `{}` is reported every {}, but its channel is stale after {}",
                    p.channel,
                    crate::model::quantity::format_duration(h),
                    crate::model::quantity::format_duration(stale)
                ),
            );
            d.hint = Some("make `heartbeat` shorter than `stale` (or leave it out: half of `stale`)".into());
            Some(h)
        }
        (Some(h), _) => Some(h),
        (None, Some(stale)) => Some(stale / 2),
        (None, None) => Some(PointPlan::DEFAULT_HEARTBEAT),
    }
}

/// W103: on an RTU bus every request shares one line; when all of them fall
/// due together, the cycle must end before the shortest interval comes round.
fn check_rtu_budget(cx: &mut Cx, path: &str, line: &SerialLine, plan: &ModbusPlan) {
    let Some(shortest) = plan.requests.iter().map(|r| r.interval).min() else {
        return;
    };
    let cycle: f64 = plan.requests.iter().map(|r| rtu_request_time(line, r, plan.pause)).sum();
    if cycle > shortest.as_secs_f64() {
        let d = cx.err(
            Code::PollBudget,
            &key(path, "baud"),
            format!(
                "a full poll cycle takes {:.0} ms at {} baud ({} request{}), longer than the {} ms interval",
                cycle * 1000.0,
                line.baud,
                plan.requests.len(),
                if plan.requests.len() == 1 { "" } else { "s" },
                shortest.as_millis()
            ),
        );
        d.hint = Some(
            "raise the baud rate or the interval, give slow points their own `interval`, or read fewer registers"
                .into(),
        );
        d.note = Some(format!(
            "a unit that does not answer adds its timeout ({} ms) to the cycle for each of its requests",
            plan.timeout.as_millis()
        ));
    }
}

/// A broker URL: `mqtt://host:1883` or `mqtts://host:8883` (`tcp`, `ssl`), no password in it.
pub(super) fn check_mqtt_url(cx: &mut Cx, url_path: &str, url: &str) {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "mqtt" | "mqtts" | "tcp" | "ssl") && u.host_str().is_some() => {
            if u.password().is_some() {
                cx.err(Code::InlineSecret, url_path, "the URL carries a password; use `password: {env: NAME}`");
            }
        }
        Ok(_) => {
            cx.err(Code::InvalidAddress, url_path, "an MQTT URL is `mqtt://host:1883` or `mqtts://host:8883`");
        }
        Err(e) => {
            cx.err(Code::InvalidAddress, url_path, format!("`{url}` is not a URL: {e}"));
        }
    }
}

fn mqtt(cx: &mut Cx, path: &str, id: &str, pipeline: &str, m: &MqttSourceSpec) -> MqttPlan {
    check_mqtt_url(cx, &key(path, "url"), &m.url);
    let default_qos = m.qos.unwrap_or(1);
    if default_qos > 2 {
        cx.err(Code::InvalidValue, &key(path, "qos"), "QoS is 0, 1 or 2");
    }
    let mut topics = Vec::new();
    let tp = key(path, "topics");
    if m.topics.is_empty() {
        cx.err_key(Code::MissingField, &tp, "an MQTT source needs at least one topic");
    }
    for (i, t) in m.topics.iter().enumerate() {
        let p = super::diag_index(&tp, i);
        if let Err(why) = check_filter(&t.filter) {
            cx.err(Code::InvalidAddress, &key(&p, "filter"), format!("`{}` is not a topic filter: {why}", t.filter));
        }
        let qos = t.qos.unwrap_or(default_qos);
        if qos > 2 {
            cx.err(Code::InvalidValue, &key(&p, "qos"), "QoS is 0, 1 or 2");
        }
        let mut values = Vec::new();
        match (&t.channel, &t.values) {
            (Some(c), None) => values.push((t.value.clone().unwrap_or_default(), c.clone())),
            (None, Some(map)) => {
                if t.value.is_some() {
                    cx.err(Code::Conflict, &key(&p, "value"), "`value` and `values` exclude each other");
                }
                values.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            (Some(_), Some(_)) => {
                cx.err(Code::Conflict, &key(&p, "values"), "give either `channel` (one reading) or `values` (several)");
            }
            (None, None) => {
                cx.err_key(Code::MissingField, &p, "a topic needs `channel` (one reading per message) or `values`");
            }
        }
        for (ptr, chan) in &values {
            let at = if t.values.is_some() { key(&key(&p, "values"), ptr) } else { key(&p, "channel") };
            if !ptr.is_empty() && !ptr.starts_with('/') {
                cx.err(Code::InvalidValue, &at, format!("`{ptr}` is not a JSON pointer; pointers start with `/`"));
            }
            templates::check_channel_template(cx, &at, chan, &t.filter);
        }
        if let Some(ts) = &t.timestamp {
            if !ts.starts_with('/') {
                cx.err(Code::InvalidValue, &key(&p, "timestamp"), format!("`{ts}` is not a JSON pointer"));
            }
        }
        topics.push(TopicPlan {
            filter: t.filter.clone(),
            qos,
            values,
            timestamp: t.timestamp.clone(),
            unit: t.unit.clone(),
        });
    }
    let username = m.username.as_ref().and_then(|s| cx.secret(&key(path, "username"), s));
    let password = m.password.as_ref().and_then(|s| cx.secret(&key(path, "password"), s));
    let tls = m.tls.as_ref().map(|t| cx.tls(&key(path, "tls"), t));
    let max_payload = m.max_payload.unwrap_or(65_536);
    if !(1..=256 << 20).contains(&max_payload) {
        cx.err(Code::InvalidQuantity, &key(path, "max_payload"), "max_payload is between 1 byte and 256 MiB");
    }
    let any_qos = topics.iter().any(|t| t.qos > 0);
    MqttPlan {
        url: m.url.clone(),
        client_id: m.client_id.clone().unwrap_or_else(|| format!("edgeguard-{pipeline}-{id}")),
        clean_session: m.clean_session.unwrap_or(!any_qos),
        keepalive: cx.positive_duration(&key(path, "keepalive"), m.keepalive.as_deref(), Duration::from_secs(30)),
        username,
        password,
        tls,
        max_payload,
        topics,
    }
}

fn nats(cx: &mut Cx, path: &str, n: &NatsSourceSpec) -> NatsSourcePlan {
    let conn = super::nats::connection(cx, path, &super::nats::login_of!(n));
    super::nats::check_stream(cx, &key(path, "stream"), &n.stream);
    super::nats::check_stream(cx, &key(path, "consumer"), &n.consumer);
    for (i, s) in n.subjects.iter().enumerate() {
        if let Err(why) = super::nats::check_subject(s, true) {
            cx.err(
                Code::InvalidAddress,
                &super::diag_index(&key(path, "subjects"), i),
                format!("`{s}` is not a subject filter: {why}"),
            );
        }
    }
    let channel = n.channel.clone().unwrap_or_else(|| NatsSourcePlan::DEFAULT_CHANNEL.into());
    if let Err(why) = NatsSourcePlan::check_channel(&channel) {
        cx.err(Code::Template, &key(path, "channel"), format!("`{channel}`: {why}")).note =
            Some("the placeholders are `{site}`, `{gateway}` and `{channel}`".into());
    }
    let batch = n.batch.unwrap_or(256);
    if !(1..=10_000).contains(&batch) {
        cx.err(Code::InvalidQuantity, &key(path, "batch"), "between 1 and 10000 messages");
    }
    NatsSourcePlan {
        conn,
        stream: n.stream.clone(),
        consumer: n.consumer.clone(),
        subjects: n.subjects.clone(),
        channel,
        batch: batch.clamp(1, 10_000),
        ack_wait: cx.positive_duration(&key(path, "ack_wait"), n.ack_wait.as_deref(), Duration::from_secs(60)),
    }
}

/// MQTT filter rules: `#` only last and alone in its level, `+` alone in its level.
pub fn check_filter(f: &str) -> Result<(), &'static str> {
    if f.is_empty() {
        return Err("it is empty");
    }
    let levels: Vec<&str> = f.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if l.contains('#') && (*l != "#" || i != levels.len() - 1) {
            return Err("`#` must be the last level, alone");
        }
        if l.contains('+') && *l != "+" {
            return Err("`+` must stand alone in its level");
        }
    }
    Ok(())
}

fn serial(cx: &mut Cx, path: &str, s: &SerialSourceSpec) -> SerialPlan {
    let line = serial_line(cx, path, &s.device, s.baud, s.parity, s.data_bits, s.stop_bits, Parity::None);
    let byte = |cx: &mut Cx, field: &str, v: &Option<String>, default: u8| -> u8 {
        match v.as_deref() {
            None => default,
            Some("\\n") => b'\n',
            Some("\\r") => b'\r',
            Some("\\t") => b'\t',
            Some(t) if t.len() == 1 => t.as_bytes()[0],
            Some(t) => {
                cx.err(Code::InvalidValue, &key(path, field), format!("`{t}` is not a single character"));
                default
            }
        }
    };
    let delimiter = byte(cx, "delimiter", &s.delimiter, b'\n');
    let separator = byte(cx, "separator", &s.separator, b',');
    let max_line = s.max_line.unwrap_or(4096);
    if !(16..=1 << 20).contains(&max_line) {
        cx.err(Code::InvalidQuantity, &key(path, "max_line"), "max_line is between 16 bytes and 1 MiB");
    }
    let cp = key(path, "channels");
    match s.format {
        LineFormat::Regex => match &s.pattern {
            None => {
                cx.err_key(Code::MissingField, path, "`format: regex` needs a `pattern` with named groups");
            }
            Some(p) => match regex::Regex::new(p) {
                Err(e) => {
                    cx.err(Code::InvalidValue, &key(path, "pattern"), format!("the pattern does not compile: {e}"));
                }
                Ok(re) => {
                    let groups: Vec<&str> = re.capture_names().flatten().collect();
                    for k in s.channels.keys().chain(s.timestamp.iter()) {
                        if !groups.contains(&k.as_str()) {
                            cx.err_key(
                                Code::UnknownReference,
                                &key(&cp, k),
                                format!("the pattern has no group named `{k}`"),
                            )
                            .hint = super::diag::did_you_mean(k, groups.iter().copied());
                        }
                    }
                }
            },
        },
        LineFormat::Csv => {
            for k in s.channels.keys() {
                if k.parse::<usize>().is_err() {
                    cx.err_key(Code::InvalidValue, &key(&cp, k), format!("`{k}` is not a column number (from 0)"));
                }
            }
        }
        LineFormat::Json => {
            for k in s.channels.keys() {
                if !k.starts_with('/') {
                    cx.err_key(Code::InvalidValue, &key(&cp, k), format!("`{k}` is not a JSON pointer"));
                }
            }
        }
    }
    if s.format != LineFormat::Regex && s.pattern.is_some() {
        cx.err(Code::Useless, &key(path, "pattern"), "`pattern` is only used with `format: regex`");
    }
    for (k, c) in &s.channels {
        cx.check_channel(&key(&cp, k), c);
    }
    SerialPlan {
        line,
        format: s.format,
        pattern: s.pattern.clone(),
        delimiter,
        separator,
        max_line,
        channels: s.channels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        timestamp: s.timestamp.clone(),
        idle: cx.opt_duration(&key(path, "idle"), s.idle.as_deref()),
    }
}

fn simulate(cx: &mut Cx, path: &str, s: &SimulateSourceSpec) -> SimulatePlan {
    let interval = cx.positive_duration(&key(path, "interval"), s.interval.as_deref(), Duration::from_secs(1));
    if interval < Duration::from_millis(1) {
        cx.err(Code::InvalidQuantity, &key(path, "interval"), "the simulator's interval is at least 1ms");
    }
    let start = s.start.as_deref().and_then(|t| match crate::model::time::parse_rfc3339(t) {
        Some(us) => Some(us),
        None => {
            cx.err(Code::InvalidValue, &key(path, "start"), format!("`{t}` is not an RFC 3339 time"));
            None
        }
    });
    let sp = key(path, "signals");
    if s.signals.is_empty() {
        cx.err_key(Code::MissingField, &sp, "a simulated source needs at least one signal");
    }
    let mut signals = Vec::new();
    for (channel, sig) in &s.signals {
        let p = key(&sp, channel);
        cx.check_channel(&p, channel);
        let period = cx.positive_duration(&key(&p, "period"), sig.period.as_deref(), Duration::from_secs(60));
        for (field, v) in [("mean", sig.mean), ("amplitude", sig.amplitude), ("noise", sig.noise)] {
            if !v.is_finite() {
                cx.err(Code::InvalidValue, &key(&p, field), "must be a finite number");
            }
        }
        if sig.noise < 0.0 || sig.amplitude < 0.0 {
            cx.err(Code::InvalidValue, &p, "noise and amplitude are not negative");
        }
        let fp = key(&p, "faults");
        let mut faults = Vec::new();
        for (i, f) in sig.faults.iter().enumerate() {
            let q = super::diag_index(&fp, i);
            let at = cx.duration(&key(&q, "at"), Some(&f.at), Duration::ZERO);
            let duration = cx.opt_duration(&key(&q, "for"), f.duration.as_deref());
            let every = cx.opt_duration(&key(&q, "every"), f.every.as_deref());
            if let Some(every) = every {
                let one_sample = f.kind == FaultKind::Spike && duration.is_none();
                let p = key(&q, "every");
                if every.is_zero() {
                    cx.err(Code::InvalidQuantity, &p, "must be longer than zero");
                } else if one_sample && every <= interval {
                    cx.err(Code::InvalidValue, &p, "a repeating spike needs `every` longer than the source's interval");
                } else if let Some(d) = duration.filter(|&d| d >= every) {
                    let d = crate::model::quantity::format_duration(d);
                    cx.err(Code::InvalidValue, &p, format!("a repeating fault lasts less than `every`; `for` is {d}"));
                } else if duration.is_none() && !one_sample {
                    cx.err(Code::MissingField, &q, "a repeating fault needs `for`, shorter than `every`");
                }
            }
            faults.push(FaultPlan { kind: f.kind, at, duration, magnitude: f.magnitude, every });
        }
        signals.push(SignalPlan {
            channel: channel.clone(),
            shape: sig.shape,
            mean: sig.mean,
            amplitude: sig.amplitude,
            period,
            noise: sig.noise,
            decimals: sig.decimals,
            unit: sig.unit.clone(),
            faults,
        });
    }
    SimulatePlan { interval, seed: s.seed.unwrap_or(0), start, signals }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(unit_id: u8, table: Table, address: u16, count: u16) -> PointPlan {
        PointPlan {
            channel: format!("c{address}"),
            unit_id,
            table,
            address,
            kind: PointType::U16,
            order: ByteOrder::AB,
            bit: None,
            count,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            interval: None,
            deadband: None,
            heartbeat: None,
        }
    }

    #[test]
    fn requests_merge_contiguous_points_within_limits() {
        let points = vec![
            pt(1, Table::Holding, 0, 2),
            pt(1, Table::Holding, 2, 2),
            pt(1, Table::Holding, 10, 1),
            pt(2, Table::Holding, 4, 1),
        ];
        let r = plan_requests(&points, 0, Duration::from_secs(1));
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].address, r[0].count, r[0].points.clone()), (0, 4, vec![0, 1]));
        let r = plan_requests(&points, 6, Duration::from_secs(1));
        assert_eq!((r[0].address, r[0].count), (0, 11));
        let many: Vec<_> = (0..130).map(|i| pt(1, Table::Input, i, 1)).collect();
        let r = plan_requests(&many, 0, Duration::from_secs(1));
        assert_eq!(r.iter().map(|r| r.count).collect::<Vec<_>>(), vec![125, 5]);
    }

    proptest::proptest! {
        /// Every point lands in exactly one request that covers all its
        /// registers, on its unit and table, within the protocol limits.
        #[test]
        fn requests_cover_every_point_within_limits(
            raw in proptest::collection::vec((1u8..4, 0u8..4, 0u16..400, 1u16..5), 0..80),
            gap in 0u16..20,
        ) {
            let tables = [Table::Coil, Table::Discrete, Table::Input, Table::Holding];
            let points: Vec<PointPlan> = raw.iter().map(|&(u, t, a, c)| pt(u, tables[t as usize], a, c)).collect();
            let reqs = plan_requests(&points, gap, Duration::from_secs(1));
            let mut seen = vec![0; points.len()];
            for r in &reqs {
                let limit = if matches!(r.table, Table::Coil | Table::Discrete) { 2000 } else { 125 };
                proptest::prop_assert!(r.count as u32 <= limit);
                for &i in &r.points {
                    seen[i] += 1;
                    let p = &points[i];
                    proptest::prop_assert_eq!((p.unit_id, p.table), (r.unit_id, r.table));
                    proptest::prop_assert!(p.address >= r.address);
                    proptest::prop_assert!(u32::from(p.address) + u32::from(p.count) <= u32::from(r.address) + u32::from(r.count));
                }
            }
            proptest::prop_assert!(seen.iter().all(|&n| n == 1));
        }
    }

    /// Measured on a socat line: 100 registers take ≈ 252 ms at 9600 baud (8E1) and ≈ 24 ms at 115200.
    #[test]
    fn rtu_time_budget_matches_the_measured_bus() {
        let line =
            |baud| SerialLine { device: "/dev/x".into(), baud, parity: Parity::Even, data_bits: 8, stop_bits: 1 };
        let req = RequestPlan {
            interval: Duration::from_secs(1),
            unit_id: 1,
            table: Table::Holding,
            address: 0,
            count: 100,
            points: vec![],
        };
        let slow = rtu_request_time(&line(9600), &req, Duration::ZERO);
        let fast = rtu_request_time(&line(115_200), &req, Duration::ZERO);
        assert!((slow - 0.252).abs() < 0.005, "{slow}");
        assert!((fast - 0.024).abs() < 0.002, "{fast}");
    }

    #[test]
    fn filters() {
        assert!(check_filter("plant/+/temp").is_ok());
        assert!(check_filter("plant/#").is_ok());
        assert!(check_filter("plant/#/x").is_err());
        assert!(check_filter("plant/a+").is_err());
    }
}
