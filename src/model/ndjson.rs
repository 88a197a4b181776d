//! The NDJSON wire format of records: hand-written serialization (no
//! intermediate `Value`), and a parser that borrows from the input line.
//! What a stage prints is what the next stage reads back
//! (docs/contract.md §3).

use std::borrow::Cow;
use std::sync::Arc;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::intern::Interner;
use super::record::{Alert, Anomaly, Delivery, Flags, Fusion, Quality, Reading, Record};
use super::time::{parse_rfc3339, write_rfc3339, Micros};

/// Appends a JSON string literal.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Names almost never need an escape: one pass without branches (the
    // compiler vectorises it) finds out, and the string is copied whole.
    let plain = bytes.iter().fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a number the way JSON wants it (finite only; callers map NaN to null).
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        // `81` rather than `81.0`, as most producers write integers.
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(v as i64).as_bytes());
        if v == 0.0 && v.is_sign_negative() {
            // -0 prints as 0; fine for data.
        }
    } else {
        let mut b = ryu::Buffer::new();
        out.extend_from_slice(b.format_finite(v).as_bytes());
    }
}

impl Reading {
    /// Appends this reading as one NDJSON line (with the newline).
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"kind\":\"reading\",\"ts\":\"");
        write_rfc3339(self.ts, out);
        out.extend_from_slice(b"\",\"channel\":");
        write_json_str(out, &self.channel);
        out.extend_from_slice(b",\"value\":");
        match self.value {
            Some(v) if v.is_finite() => write_f64(out, v),
            _ => out.extend_from_slice(b"null"),
        }
        if let Some(t) = &self.text {
            out.extend_from_slice(b",\"text\":");
            write_json_str(out, t);
        }
        if let Some(u) = &self.unit {
            out.extend_from_slice(b",\"unit\":");
            write_json_str(out, u);
        }
        out.extend_from_slice(b",\"quality\":\"");
        out.extend_from_slice(self.quality.as_str().as_bytes());
        out.push(b'"');
        if !self.flags.is_empty() {
            out.extend_from_slice(b",\"flags\":[");
            for (i, n) in self.flags.names().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(n.as_bytes());
                out.push(b'"');
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"source\":");
        write_json_str(out, &self.source);
        if let Some(f) = &self.fusion {
            for (key, list) in [(&b",\"inputs\":["[..], &f.inputs), (b",\"voted_out\":[", &f.voted_out)] {
                out.extend_from_slice(key);
                for (i, c) in list.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, c);
                }
                out.push(b']');
            }
            out.extend_from_slice(b",\"spread\":");
            write_f64(out, if f.spread.is_finite() { f.spread } else { 0.0 });
        }
        out.extend_from_slice(b"}\n");
    }
}

impl Anomaly {
    /// Appends this anomaly as one NDJSON line (with the newline). Numbers
    /// as readings write them; a score or expected value that is not finite
    /// is `null`.
    pub fn write_ndjson(&self, line: &mut Vec<u8>) {
        let num = |line: &mut Vec<u8>, v: Option<f64>| match v.filter(|v| v.is_finite()) {
            Some(v) => write_f64(line, v),
            None => line.extend_from_slice(b"null"),
        };
        line.extend_from_slice(b"{\"kind\":\"anomaly\",\"ts\":\"");
        write_rfc3339(self.ts, line);
        line.extend_from_slice(b"\",\"channel\":");
        write_json_str(line, &self.channel);
        line.extend_from_slice(b",\"detector\":");
        write_json_str(line, &self.detector);
        line.extend_from_slice(b",\"method\":");
        write_json_str(line, &self.method);
        line.extend_from_slice(b",\"value\":");
        num(line, self.value);
        line.extend_from_slice(b",\"score\":");
        num(line, self.score);
        line.extend_from_slice(b",\"expected\":");
        num(line, self.expected);
        line.extend_from_slice(b",\"threshold\":");
        num(line, self.threshold);
        line.extend_from_slice(b",\"detail\":");
        write_json_str(line, &self.detail);
        line.extend_from_slice(b"}\n");
    }

    /// The fields a template sees: the NDJSON line's, as JSON reads them.
    pub fn context(&self) -> minijinja::Value {
        let mut line = Vec::with_capacity(256);
        self.write_ndjson(&mut line);
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
        minijinja::Value::from_serialize(&json)
    }
}

impl Alert {
    /// Appends this alert as one NDJSON line (with the newline).
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        // Serializing a struct of strings, numbers and a string map cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

impl Delivery {
    /// The delivery as JSON: its alert's fields, then `notifier`, `error`
    /// and `attempts`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut row = serde_json::to_value(&self.alert).unwrap_or_default();
        if let Some(m) = row.as_object_mut() {
            m.insert("kind".into(), "delivery".into());
            m.insert("notifier".into(), self.notifier.clone().into());
            m.insert("error".into(), self.error.clone().into());
            m.insert("attempts".into(), self.attempts.into());
        }
        row
    }
}

impl Record {
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        match self {
            Record::Reading(r) => r.write_ndjson(out),
            Record::Anomaly(a) => a.write_ndjson(out),
            Record::Alert(a) => a.write_ndjson(out),
            Record::Delivery(d) => {
                let _ = serde_json::to_writer(&mut *out, &d.to_json());
                out.push(b'\n');
            }
            Record::Other { line, .. } => {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
    }
}

/// Why an input line was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(pub String);

/// A line as read, before it becomes a record: by [`super::flat_line`] or
/// serde (a field added here is read by serde until `flat_line::Key` has it).
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) struct RawLine<'a> {
    #[serde(borrow, default)]
    pub(super) kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) ts: Option<RawTs<'a>>,
    #[serde(borrow, default)]
    pub(super) channel: Option<Text<'a>>,
    #[serde(default)]
    pub(super) value: Option<f64>,
    #[serde(borrow, default)]
    pub(super) text: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) unit: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub(super) quality: Option<Text<'a>>,
    #[serde(default)]
    pub(super) flags: Option<FlagList>,
    #[serde(borrow, default)]
    pub(super) source: Option<Text<'a>>,
    #[serde(default)]
    pub(super) inputs: Option<Vec<String>>,
    #[serde(default)]
    pub(super) voted_out: Option<Vec<String>>,
    #[serde(default)]
    pub(super) spread: Option<f64>,
}

/// A string borrowed from the line when it has no escapes, owned otherwise.
/// (`#[serde(borrow)]` does not reach through `Option<Cow<str>>`: that
/// would copy every string of every line.)
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// `ts` as RFC 3339 text or Unix seconds. A hand-written visitor: serde's
/// untagged enums buffer the value first, which allocates on every line.
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) enum RawTs<'a> {
    Text(Cow<'a, str>),
    Number(f64),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawTs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawTs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 time or Unix seconds")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<RawTs<'a>, E> {
                Ok(RawTs::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTs<'a>, E> {
                Ok(RawTs::Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawTs<'a>, E> {
                Ok(RawTs::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawTs<'a>, E> {
                Ok(RawTs::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawTs<'a>, E> {
                Ok(RawTs::Number(v as f64))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg_attr(test, derive(Debug, PartialEq))]
pub(super) struct FlagList(Flags);

impl<'de> Deserialize<'de> for FlagList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FlagList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of flag names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FlagList, A::Error> {
                let mut flags = Flags::empty();
                while let Some(name) = seq.next_element::<Cow<'de, str>>()? {
                    flags.insert(Flags::from_name(&name));
                }
                Ok(FlagList(flags))
            }
            fn visit_unit<E: de::Error>(self) -> Result<FlagList, E> {
                Ok(FlagList(Flags::empty()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Longest `text` of a reading (a Modbus string is at most 250 bytes).
pub const MAX_TEXT: usize = 1024;

/// Parses one NDJSON line into a record. `now` is used when the line has no
/// `ts`; `default_source` when it has no `source`.
pub fn parse_ndjson_line(
    line: &[u8],
    interner: &mut Interner,
    now: Micros,
    default_source: &Arc<str>,
) -> Result<Record, LineError> {
    // One UTF-8 check of the whole line, rather than one per string inside it.
    let line =
        std::str::from_utf8(line).map_err(|e| LineError(format!("invalid UTF-8 (column {})", e.valid_up_to() + 1)))?;
    let raw = match super::flat_line::parse(line) {
        Some(raw) => raw,
        None => serde_json::from_str(line).map_err(|e| LineError(json_reason(&e)))?,
    };
    if let Some(kind) = raw.kind.as_deref() {
        if kind != "reading" {
            if kind.is_empty() || kind.len() > 32 {
                return Err(LineError(format!("`kind` {kind:?} is not a record kind")));
            }
            // A known kind becomes its typed record; anything else (or a
            // known kind whose fields do not parse) is valid JSON (parsed
            // above), passed on as written.
            let typed = match kind {
                "anomaly" => serde_json::from_str::<Anomaly>(line)
                    .ok()
                    .map(|a| Record::Anomaly(Box::new(Anomaly { from_input: true, ..a }))),
                "alert" => serde_json::from_str::<Alert>(line)
                    .ok()
                    .map(|a| Record::Alert(Box::new(Alert { from_input: true, ..a }))),
                _ => None,
            };
            if let Some(t) = typed {
                return Ok(t);
            }
            return Ok(Record::Other { kind: kind.into(), line: line.trim_end().into() });
        }
    }
    let channel = interner.channel(&raw.channel.ok_or_else(|| LineError("no `channel`".into()))?)?;
    let ts = match raw.ts {
        None => now,
        Some(RawTs::Text(t)) => {
            parse_rfc3339(&t).ok_or_else(|| LineError(format!("`ts` {t:?} is not an RFC 3339 time")))?
        }
        Some(RawTs::Number(n)) if n.is_finite() && n.abs() < 1e11 => (n * 1e6).round() as i64,
        Some(RawTs::Number(n)) => return Err(LineError(format!("`ts` {n} is not a Unix time in seconds"))),
    };
    let mut quality = match raw.quality.as_deref() {
        None => Quality::Good,
        Some(q) => {
            Quality::parse(q).ok_or_else(|| LineError(format!("`quality` {q:?} is not good, suspect or bad")))?
        }
    };
    let flags = raw.flags.map_or(Flags::empty(), |f| f.0);
    if raw.value.is_none() && raw.text.is_none() {
        // A reading without a value is never good.
        quality = Quality::Bad;
    }
    let text = match raw.text {
        Some(t) if t.len() > MAX_TEXT => return Err(LineError(format!("`text` is longer than {MAX_TEXT} bytes"))),
        Some(t) => Some(Arc::from(&*t)),
        None => None,
    };
    Ok(Record::Reading(Reading {
        ts,
        channel,
        value: raw.value,
        text,
        unit: raw.unit.map(|u| interner.name("unit", &u)).transpose()?,
        quality,
        flags,
        source: match raw.source {
            None => default_source.clone(),
            Some(s) => interner.name("source", &s)?,
        },
        from_input: true,
        fusion: match (raw.inputs, raw.voted_out) {
            (None, None) => None,
            (inputs, voted_out) => {
                let mut names = |v: Option<Vec<String>>| -> Result<Vec<Arc<str>>, LineError> {
                    v.unwrap_or_default().iter().take(64).map(|c| interner.channel(c)).collect()
                };
                Some(Box::new(Fusion {
                    inputs: names(inputs)?,
                    voted_out: names(voted_out)?,
                    spread: raw.spread.unwrap_or(0.0),
                }))
            }
        },
    }))
}

fn json_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde_json appends " at line 1 column N"; the line is ours to report.
    match msg.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &msg[..i], e.column()),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Record, LineError> {
        parse_ndjson_line(s.as_bytes(), &mut Interner::default(), 0, &Arc::from("input"))
    }

    #[test]
    fn round_trip_of_the_design_example() {
        let line = r#"{"kind":"reading","ts":"2026-11-22T10:00:00.125Z","channel":"boiler.temp.a","value":81.2,"unit":"degC","quality":"good","source":"plc1"}"#;
        let rec = parse(line).unwrap();
        let mut out = Vec::new();
        rec.write_ndjson(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{line}\n"));
    }

    #[test]
    fn bad_readings_keep_flags_and_null() {
        let line = r#"{"kind":"reading","ts":"2026-11-22T10:00:00.125Z","channel":"b","value":null,"quality":"bad","flags":["timeout","exception_2"],"source":"plc1"}"#;
        let Record::Reading(r) = parse(line).unwrap() else { panic!() };
        assert_eq!(r.value, None);
        assert!(r.flags.contains(Flags::TIMEOUT) && r.flags.contains(Flags::exception(2)));
        let mut out = Vec::new();
        r.write_ndjson(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{line}\n"));
    }

    #[test]
    fn lines_without_kind_are_readings_and_other_kinds_pass_through() {
        assert!(matches!(parse(r#"{"channel":"a","value":1}"#), Ok(Record::Reading(_))));
        let other = parse(r#"{"kind":"anomaly","channel":"a","score":5}"#).unwrap();
        assert_eq!(other.kind(), "anomaly");
    }

    #[test]
    fn anomalies_and_alerts_are_typed_and_write_back_byte_for_byte() {
        let a = r#"{"kind":"anomaly","ts":"2026-01-01T00:10:00.000Z","channel":"a.b","detector":"spike","method":"zscore","value":81,"score":4.25,"expected":null,"threshold":4,"detail":"4.2 sd"}"#;
        let rec = parse(a).unwrap();
        assert!(matches!(&rec, Record::Anomaly(x) if x.from_input && x.value == Some(81.0)));
        let mut out = Vec::new();
        rec.write_ndjson(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{a}\n"));
        let al = r#"{"kind":"alert","ts":"2026-01-01T00:10:00.000Z","rule":"hot","state":"firing","severity":"critical","channel":"a.b","value":81.0,"title":"t","body":"b","fingerprint":"0123456789abcdef","labels":{"team":"ops"}}"#;
        let rec = parse(al).unwrap();
        assert!(matches!(&rec, Record::Alert(x) if x.state == crate::model::record::Transition::Firing));
        let mut out = Vec::new();
        rec.write_ndjson(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{al}\n"));
        // Another program's records: nulls and numbers where text is due.
        let theirs = r#"{"kind":"anomaly","ts":"2026-01-01T00:10:00Z","channel":"a.b","detail":null,"zone":3}"#;
        let Record::Anomaly(x) = parse(theirs).unwrap() else { panic!("an anomaly") };
        assert_eq!((x.detector.as_str(), x.detail.as_str(), x.score), ("", "", None));
        let theirs = r#"{"kind":"alert","ts":"2026-01-01T00:10:00Z","rule":"r","state":"resolved","channel":"c","labels":{"line":3}}"#;
        let Record::Alert(x) = parse(theirs).unwrap() else { panic!("an alert") };
        assert_eq!(x.labels["line"], "3");
        // A known kind that does not parse passes through untouched.
        let odd = r#"{"kind":"alert","rule":3}"#;
        assert!(matches!(parse(odd).unwrap(), Record::Other { line, .. } if &*line == odd));
    }

    #[test]
    fn escaped_strings_parse_too() {
        let Record::Reading(r) = parse(r#"{"channel":"a\u002eb","value":1,"source":"pl\"c"}"#).unwrap() else {
            panic!()
        };
        assert_eq!((&*r.channel, &*r.source), ("a.b", "pl\"c"));
    }

    #[test]
    fn rejections_say_why() {
        assert!(parse("{").unwrap_err().0.contains("EOF"));
        assert!(parse(r#"{"value":1}"#).unwrap_err().0.contains("channel"));
        assert!(parse(r#"{"channel":"a","value":"x"}"#).is_err());
        assert!(parse(r#"{"channel":"a","value":NaN}"#).is_err());
        assert!(parse(r#"{"channel":"a b","value":1}"#).is_err());
        assert!(parse(r#"{"channel":"a","ts":"yesterday","value":1}"#).unwrap_err().0.contains("RFC 3339"));
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn the_common_line_takes_the_fast_path() {
        let line = r#"{"kind":"reading","ts":"2026-11-22T00:00:00.001Z","channel":"plant.line0.unit0.pres","value":3.067,"quality":"good","source":"plc0"}"#;
        let raw = crate::model::flat_line::parse(line).expect("a plain line");
        assert_eq!(raw, serde_json::from_str::<RawLine>(line).unwrap());
        assert_eq!(raw.value, Some(3.067));
        assert!(crate::model::flat_line::parse(r#"{"channel":"a\u002eb","value":1}"#).is_none());
        // A key it does not know (a field added later) is serde's to read.
        assert!(crate::model::flat_line::parse(r#"{"channel":"a","value":1,"extra":2}"#).is_none());
    }

    proptest::proptest! {
        /// Whatever line the fast path reads, serde reads the same; what
        /// it leaves alone, serde reads or rejects.
        #[test]
        fn the_fast_path_reads_lines_as_serde_does(
            fields in proptest::collection::vec((0usize..15, 0usize..16), 0..8),
            spaces in proptest::collection::vec(0usize..3, 24),
        ) {
            const KEYS: [&str; 15] = ["kind", "ts", "channel", "value", "unit", "quality", "source", "spread",
                "text", "flags", "inputs", "voted_out", "other", "k\\u0069nd", "Value"];
            const VALUES: [&str; 16] = ["\"reading\"", "\"2026-11-22T10:00:00Z\"", "\"plant.a\"", "81.25", "-0",
                "1767225600", "-12e-3", "1e400", "null", "true", "[\"stale\"]", "{}", "\"a\\\"b\"", "0.1e1",
                "\"\"", "01"];
            let ws = [" ", "", "\n"];
            let mut line = String::from(ws[spaces[0]]);
            line.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(ws[spaces[(2 * i + 1) % 24]]);
                line.push_str(&format!("\"{}\":{}{}", KEYS[*k], ws[spaces[(2 * i + 2) % 24]], VALUES[*v]));
            }
            line.push_str(ws[spaces[23]]);
            line.push('}');
            let serde = serde_json::from_str::<RawLine>(&line);
            if let Some(fast) = crate::model::flat_line::parse(&line) {
                let serde = serde.map_err(|e| e.to_string());
                proptest::prop_assert_eq!(Ok(fast), serde, "{}", line);
            }
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\n\u{1}");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\n\u0001""#);
    }
}
