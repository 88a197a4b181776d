//! Numbers and times out of message payloads and text lines (MQTT, serial).

use crate::model::time::{parse_rfc3339, Micros};

/// A reading's value from a JSON value: a number, a boolean (1/0), or a
/// string holding a number. Anything else is no value.
pub fn json_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        serde_json::Value::String(s) => text_number(s.as_bytes()),
        _ => None,
    }
}

/// A bare number in text (`21.5`, ` -3e2 `, `true`).
pub fn text_number(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?.trim();
    match s {
        "true" | "TRUE" | "on" | "ON" => Some(1.0),
        "false" | "FALSE" | "off" | "OFF" => Some(0.0),
        _ => s.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// A time from JSON: an RFC 3339 string, or Unix time as a number (seconds,
/// or milliseconds when it is too large to be seconds).
pub fn json_time(v: &serde_json::Value) -> Option<Micros> {
    match v {
        serde_json::Value::String(s) => text_time(s),
        serde_json::Value::Number(n) => unix_time(n.as_f64()?),
        _ => None,
    }
}

/// A time from text: RFC 3339, or Unix seconds/milliseconds.
pub fn text_time(s: &str) -> Option<Micros> {
    let s = s.trim();
    parse_rfc3339(s).or_else(|| unix_time(s.parse().ok()?))
}

fn unix_time(n: f64) -> Option<Micros> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    // Seconds until the year 5138; beyond that it is milliseconds.
    let secs = if n < 1e11 { n } else { n / 1000.0 };
    (secs < 1e11).then(|| (secs * 1e6).round() as Micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_times() {
        assert_eq!(json_number(&json!(21.5)), Some(21.5));
        assert_eq!(json_number(&json!(true)), Some(1.0));
        assert_eq!(json_number(&json!("7")), Some(7.0));
        assert_eq!(json_number(&json!(null)), None);
        assert_eq!(json_number(&json!([1])), None);
        assert_eq!(text_number(b" -3e2\r"), Some(-300.0));
        assert_eq!(text_number(b"NaN"), None);
        assert_eq!(text_number(b"\xff"), None);
        assert_eq!(json_time(&json!(1_767_225_600)), Some(1_767_225_600_000_000));
        assert_eq!(json_time(&json!(1_767_225_600_500u64)), Some(1_767_225_600_500_000));
        assert_eq!(json_time(&json!("2026-01-01T00:00:00Z")), Some(1_767_225_600_000_000));
        assert_eq!(json_time(&json!("yesterday")), None);
    }
}
