//! Records: what flows through the engine and out as NDJSON (DESIGN.md §3).
//!
//! A [`Reading`] is small and cheap to move: channel, source and unit names
//! are interned `Arc<str>`, flags are a bitset, the time is an `i64`.
//! Serialization to NDJSON is hand-written (no intermediate `Value`), and
//! parsing borrows from the input line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::time::{parse_rfc3339, write_rfc3339, Micros};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Quality {
    #[default]
    Good,
    Suspect,
    Bad,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Suspect => "suspect",
            Quality::Bad => "bad",
        }
    }

    pub fn parse(s: &str) -> Option<Quality> {
        match s {
            "good" => Some(Quality::Good),
            "suspect" | "uncertain" => Some(Quality::Suspect),
            "bad" => Some(Quality::Bad),
            _ => None,
        }
    }
}

/// Why a reading is not good. A bitset; names as in DESIGN.md §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u32);

const FLAG_NAMES: &[&str] = &[
    "out_of_range",
    "rate",
    "stuck",
    "stale",
    "timeout",
    "disconnected",
    "crc",
    "voted_out",
    "invalid",
    "exception_1",
    "exception_2",
    "exception_3",
    "exception_4",
    "exception_5",
    "exception_6",
    "exception_8",
    "exception_10",
    "exception_11",
    "suspect_input",
    "unknown",
];

impl Flags {
    pub const OUT_OF_RANGE: Flags = Flags(1 << 0);
    pub const RATE: Flags = Flags(1 << 1);
    pub const STUCK: Flags = Flags(1 << 2);
    pub const STALE: Flags = Flags(1 << 3);
    pub const TIMEOUT: Flags = Flags(1 << 4);
    pub const DISCONNECTED: Flags = Flags(1 << 5);
    pub const CRC: Flags = Flags(1 << 6);
    pub const VOTED_OUT: Flags = Flags(1 << 7);
    /// Not a finite number (NaN or infinity).
    pub const INVALID: Flags = Flags(1 << 8);
    /// A flag name this version does not know, kept so it is not lost silently.
    pub const UNKNOWN: Flags = Flags(1 << 19);

    pub fn empty() -> Flags {
        Flags(0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn contains(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }
    pub fn insert(&mut self, f: Flags) {
        self.0 |= f.0;
    }
    pub fn from_name(name: &str) -> Flags {
        FLAG_NAMES.iter().position(|n| *n == name).map_or(Flags::UNKNOWN, |i| Flags(1 << i))
    }
    /// A Modbus exception code as a flag.
    pub fn exception(code: u8) -> Flags {
        Flags::from_name(&format!("exception_{code}"))
    }
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        FLAG_NAMES.iter().enumerate().filter(move |(i, _)| self.0 & (1 << i) != 0).map(|(_, n)| *n)
    }
}

/// One value of one channel at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub ts: Micros,
    pub channel: Arc<str>,
    /// None when the reading is `bad` for want of a value (timeout, gap),
    /// or when it carries `text` instead.
    pub value: Option<f64>,
    /// A text value (a Modbus `string` point: a serial number, a firmware
    /// version); such readings have no `value`.
    pub text: Option<Arc<str>>,
    pub unit: Option<Arc<str>>,
    pub quality: Quality,
    pub flags: Flags,
    pub source: Arc<str>,
    /// Read with `--input` rather than created by this process (stored only
    /// with `--store-input`).
    pub from_input: bool,
    /// How a fused reading was made (the `fuse` stage's readings only).
    pub fusion: Option<Box<Fusion>>,
}

impl Reading {
    /// A reading of `channel` at `ts_s` seconds from source `s`, for tests:
    /// good with a value, bad without.
    #[cfg(test)]
    pub fn sample(channel: &str, ts_s: i64, value: Option<f64>) -> Record {
        Record::Reading(Reading {
            ts: ts_s * 1_000_000,
            channel: Arc::from(channel),
            value,
            text: None,
            unit: None,
            quality: if value.is_some() { Quality::Good } else { Quality::Bad },
            flags: Flags::empty(),
            source: Arc::from("s"),
            from_input: false,
            fusion: None,
        })
    }
}

/// The inputs behind a fused reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Fusion {
    /// Inputs the value was computed from.
    pub inputs: Vec<Arc<str>>,
    /// Inputs farther than `max_spread` from the consensus.
    pub voted_out: Vec<Arc<str>>,
    /// Largest minus smallest candidate value.
    pub spread: f64,
}

/// Anything that flows through the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Reading(Reading),
    /// A record of another kind (anomaly, alert) that this stage passes on
    /// untouched: the JSON line as read.
    Other {
        kind: Box<str>,
        line: Box<str>,
        /// Read with `--input` rather than created by this process.
        from_input: bool,
    },
}

impl Record {
    pub fn kind(&self) -> &str {
        match self {
            Record::Reading(_) => "reading",
            Record::Other { kind, .. } => kind,
        }
    }
}

/// A fast, non-cryptographic hasher (the Fx hash of rustc) for maps keyed by
/// channel names on the hot path. SipHash's DoS resistance buys nothing
/// here: the maps are bounded in size, and names come from the operator's
/// own devices.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;

/// Longest unit or source name accepted from input (bytes).
pub const MAX_NAME: usize = 200;

/// Interns channel, source and unit names so each is allocated once.
///
/// Bounded: past `cap` distinct names new ones are allocated per use instead
/// of remembered, and every name is at most 200 bytes, so hostile input with
/// unique names cannot grow it without bound. Channel names live apart from
/// units and sources: only they are checked, once, when first seen.
pub struct Interner {
    channels: FxHashMap<Box<str>, Arc<str>>,
    names: FxHashMap<Box<str>, Arc<str>>,
    cap: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Interner::with_cap(100_000)
    }
}

fn intern(map: &mut FxHashMap<Box<str>, Arc<str>>, cap: usize, s: &str) -> Arc<str> {
    if let Some(a) = map.get(s) {
        return a.clone();
    }
    let a: Arc<str> = Arc::from(s);
    if map.len() < cap {
        map.insert(Box::from(s), a.clone());
    }
    a
}

impl Interner {
    pub fn with_cap(cap: usize) -> Self {
        Interner { channels: FxHashMap::default(), names: FxHashMap::default(), cap }
    }

    /// A unit or source name.
    pub fn name(&mut self, what: &str, s: &str) -> Result<Arc<str>, LineError> {
        if s.len() > MAX_NAME {
            return Err(LineError(format!("`{what}` is longer than {MAX_NAME} bytes")));
        }
        Ok(intern(&mut self.names, self.cap, s))
    }

    /// A channel name, checked the first time it is seen.
    pub fn channel(&mut self, s: &str) -> Result<Arc<str>, LineError> {
        if let Some(a) = self.channels.get(s) {
            return Ok(a.clone());
        }
        crate::compile::check_channel_name(s)
            .map_err(|why| LineError(format!("`channel` is not a channel name: {why}")))?;
        Ok(intern(&mut self.channels, self.cap, s))
    }
}

/// Appends a JSON string literal.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
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

impl Record {
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        match self {
            Record::Reading(r) => r.write_ndjson(out),
            Record::Other { line, .. } => {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
    }
}

/// Why an input line was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError(pub String);

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(borrow, default)]
    kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    ts: Option<RawTs<'a>>,
    #[serde(borrow, default)]
    channel: Option<Text<'a>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(borrow, default)]
    text: Option<Text<'a>>,
    #[serde(borrow, default)]
    unit: Option<Text<'a>>,
    #[serde(borrow, default)]
    quality: Option<Text<'a>>,
    #[serde(default)]
    flags: Option<FlagList>,
    #[serde(borrow, default)]
    source: Option<Text<'a>>,
    #[serde(default)]
    inputs: Option<Vec<String>>,
    #[serde(default)]
    voted_out: Option<Vec<String>>,
    #[serde(default)]
    spread: Option<f64>,
}

/// A string borrowed from the line when it has no escapes, owned otherwise.
/// (`#[serde(borrow)]` does not reach through `Option<Cow<str>>`: that
/// would copy every string of every line.)
struct Text<'a>(Cow<'a, str>);

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
enum RawTs<'a> {
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

struct FlagList(Flags);

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
    let raw: RawLine = serde_json::from_slice(line).map_err(|e| LineError(json_reason(&e)))?;
    if let Some(kind) = raw.kind.as_deref() {
        if kind != "reading" {
            if kind.is_empty() || kind.len() > 32 {
                return Err(LineError(format!("`kind` {kind:?} is not a record kind")));
            }
            // Valid JSON (parsed above), passed on as written.
            let text = std::str::from_utf8(line).map_err(|_| LineError("invalid UTF-8".into()))?;
            return Ok(Record::Other { kind: kind.into(), line: text.trim_end().into(), from_input: true });
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
    fn strings_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\n\u{1}");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\n\u0001""#);
    }
}
