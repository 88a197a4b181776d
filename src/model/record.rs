//! Records: what flows through the engine and out as NDJSON
//! (docs/contract.md §3). The wire format is in [`super::ndjson`].
//!
//! A [`Reading`] is small and cheap to move: channel, source and unit names
//! are interned `Arc<str>` ([`super::intern`]), flags are a bitset, the time
//! is an `i64` of microseconds.

use std::sync::Arc;

use super::time::Micros;

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

/// Why a reading is not good. A bitset; names as in docs/contract.md §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u32);

/// Flag names by bit. Append only: the store keeps flags as these bits and
/// its `readings` view names them from a copy of this list
/// (`sinks::store::schema`), so a new name needs a migration that re-creates
/// the view with it (a unit test there fails until it has one).
pub const FLAG_NAMES: &[&str] = &[
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
    "bad_input",
    "reset",
    "gap",
    "mismatch",
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
    /// A fused reading with too few inputs; a computed one from a `suspect` input.
    pub const SUSPECT_INPUT: Flags = Flags(1 << 18);
    /// A flag name this version does not know, kept so it is not lost silently.
    pub const UNKNOWN: Flags = Flags(1 << 19);
    /// A computed reading from a `bad` input, or one older than `max_age`.
    pub const BAD_INPUT: Flags = Flags(1 << 20);
    /// A counter went back without wrapping around: it was reset.
    pub const RESET: Flags = Flags(1 << 21);
    /// An integral or delta over a gap between readings it did not bridge.
    pub const GAP: Flags = Flags(1 << 22);
    /// A Modbus answer that does not belong to the request (another device
    /// with the same unit id, a wrong transaction id, function or length).
    pub const MISMATCH: Flags = Flags(1 << 23);

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
    /// The flags of a comma-separated list of names (the store's `flags`
    /// column); empty items are skipped, an unknown name is `UNKNOWN`.
    pub fn from_list(list: &str) -> Flags {
        let mut flags = Flags::empty();
        for name in list.split(',').filter(|s| !s.is_empty()) {
            flags.insert(Flags::from_name(name));
        }
        flags
    }
    /// A Modbus exception code as a flag.
    pub fn exception(code: u8) -> Flags {
        Flags::from_name(&format!("exception_{code}"))
    }
    /// A failed poll: the device gave no (trustworthy) value (`timeout`,
    /// `disconnected`, `crc`, `mismatch`, `exception_N`). What a source's
    /// health (serve) and `over: sources` alert rules count as down.
    pub fn failed_poll(self) -> bool {
        /// `exception_1` … `exception_11` (bits 9 to 17).
        const EXCEPTIONS: u32 = ((1 << 18) - 1) & !((1 << 9) - 1);
        const FAILED: u32 = Flags::TIMEOUT.0 | Flags::DISCONNECTED.0 | Flags::CRC.0 | Flags::MISMATCH.0 | EXCEPTIONS;
        self.0 & FAILED != 0
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

/// An anomaly a detector found on a channel (`kind: anomaly`).
///
/// Written by [`Anomaly::write_ndjson`] (the one writer: stdout, the SSE
/// stream and the next stage of a pipe all see its bytes) and read back by
/// serde (the one reader: `--input` and the alert stage's context).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename = "anomaly")]
pub struct Anomaly {
    #[serde(with = "super::time::rfc3339")]
    pub ts: Micros,
    pub channel: String,
    /// The detector's id in the spec.
    #[serde(default, deserialize_with = "null_as_default")]
    pub detector: String,
    /// Its method (`zscore`, `ewma`, …).
    #[serde(default, deserialize_with = "null_as_default")]
    pub method: String,
    /// The value that was judged (`null` for a pattern on a text reading).
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub expected: Option<f64>,
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub detail: String,
    /// Read with `--input` rather than made by this process.
    #[serde(skip)]
    pub from_input: bool,
}

/// Reading another program's records: a field given as `null` is its default.
fn null_as_default<'de, D: serde::Deserializer<'de>, T: Default + serde::Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// Alert labels as text, whatever JSON the values are (`{"line": 3}` → `"3"`).
fn labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<indexmap::IndexMap<String, String>, D::Error> {
    let raw: Option<indexmap::IndexMap<String, serde_json::Value>> = serde::Deserialize::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// A state change of an alert that notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// Became firing, or is firing again at its `repeat`.
    Firing,
    Resolved,
    /// Fired and resolved too often (the rule's `flapping`): said once, then
    /// quiet until it keeps one state.
    Flapping,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Firing => "firing",
            Transition::Resolved => "resolved",
            Transition::Flapping => "flapping",
        }
    }
}

/// A notification an alert rule made (`kind: alert`): printed, stored, sent.
/// Written and read by serde, in this field order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename = "alert")]
pub struct Alert {
    #[serde(with = "super::time::rfc3339")]
    pub ts: Micros,
    pub rule: String,
    pub state: Transition,
    /// `info`, `warning` or `critical`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub severity: String,
    pub channel: String,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub body: String,
    /// 16 hex digits of SHA-256 over rule and channel.
    #[serde(default, deserialize_with = "null_as_default")]
    pub fingerprint: String,
    #[serde(default, deserialize_with = "labels")]
    pub labels: indexmap::IndexMap<String, String>,
    #[serde(skip)]
    pub from_input: bool,
}

/// The outcome of sending one alert through one notifier (`kind:
/// delivery`): the notification log. Stored in `alerts`, never printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub alert: Alert,
    pub notifier: String,
    /// Why it was not delivered after its retries; `None` when it was.
    pub error: Option<String>,
    pub attempts: u32,
}

/// An alert on its way to the notifiers: the record, the notifiers named by
/// its rule, and everything their templates see.
#[derive(Debug, Clone)]
pub struct Notification {
    pub alert: Alert,
    pub notify: Arc<[String]>,
    /// Everything a notifier template sees: the triggering record's fields
    /// and the alert's (`rule`, `state`, `title`, …, `labels`, `recent`).
    pub context: minijinja::Value,
    /// Template errors met while rendering title and body.
    pub errors: Vec<String>,
    /// An alert record that came in, routed by a relay rule: it is already
    /// in the stream and is not added again.
    pub relayed: bool,
    /// A group's notification (`group`): its alerts are in the stream
    /// already, each as its own record.
    pub grouped: bool,
}

/// Anything that flows through the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Reading(Reading),
    Anomaly(Box<Anomaly>),
    Alert(Box<Alert>),
    Delivery(Box<Delivery>),
    /// A record of a kind this version does not know (or a known kind whose
    /// fields do not parse), read with `--input`: passed on untouched, as
    /// the JSON line was read, and never stored.
    Other {
        kind: Box<str>,
        line: Box<str>,
    },
}

impl Record {
    /// The `kind` field of the record's NDJSON line.
    pub fn kind(&self) -> &str {
        match self {
            Record::Reading(_) => "reading",
            Record::Anomaly(_) => "anomaly",
            Record::Alert(_) => "alert",
            Record::Delivery(_) => "delivery",
            Record::Other { kind, .. } => kind,
        }
    }

    /// The channel the record is about, if any.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Record::Reading(r) => Some(&r.channel),
            Record::Anomaly(a) => Some(&a.channel),
            Record::Alert(a) => Some(&a.channel),
            Record::Delivery(d) => Some(&d.alert.channel),
            Record::Other { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    /// The store writes a reading's flags as their names joined by commas;
    /// reading them back gives the same flags.
    #[test]
    fn a_list_of_flag_names_gives_back_the_flags() {
        for f in [Flags::empty(), Flags::STALE, Flags(Flags::RATE.0 | Flags::exception(4).0 | Flags::GAP.0)] {
            assert!(!f.contains(Flags::UNKNOWN));
            assert_eq!(Flags::from_list(&f.names().collect::<Vec<_>>().join(",")), f);
        }
        assert_eq!(Flags::from_list(",stuck,,"), Flags::STUCK);
        assert_eq!(Flags::from_list("stuck,no_such_flag"), Flags(Flags::STUCK.0 | Flags::UNKNOWN.0));
    }

    #[test]
    fn a_failed_poll_is_any_flag_that_says_the_device_gave_no_value() {
        for f in [
            Flags::TIMEOUT,
            Flags::DISCONNECTED,
            Flags::CRC,
            Flags::MISMATCH,
            Flags::exception(1),
            Flags::exception(11),
        ] {
            assert!(f.failed_poll(), "{:?}", f.names().collect::<Vec<_>>());
        }
        for f in [Flags::STALE, Flags::OUT_OF_RANGE, Flags::VOTED_OUT, Flags::BAD_INPUT, Flags::empty()] {
            assert!(!f.failed_poll(), "{:?}", f.names().collect::<Vec<_>>());
        }
    }
}
