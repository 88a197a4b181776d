//! Timestamps: microseconds since the Unix epoch, UTC, as `i64`.
//!
//! Formatting and parsing RFC 3339 by hand keeps the hot path free of
//! allocation and of a calendar crate: a reading's `ts` is formatted and parsed
//! millions of times a second in bulk runs.

/// Microseconds since the epoch.
pub type Micros = i64;

pub fn now_micros() -> Micros {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    d.as_micros() as i64
}

// Howard Hinnant's days_from_civil / civil_from_days.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends `2026-11-22T10:00:00.125Z` (milliseconds, or microseconds when
/// the value has them) to `out`.
pub fn write_rfc3339(us: Micros, out: &mut Vec<u8>) {
    let secs = us.div_euclid(1_000_000);
    let sub = us.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut buf = [0u8; 27];
    let y = y.clamp(0, 9999) as u32;
    let put2 = |b: &mut [u8], v: u32| {
        b[0] = b'0' + (v / 10) as u8;
        b[1] = b'0' + (v % 10) as u8;
    };
    put2(&mut buf[0..2], y / 100);
    put2(&mut buf[2..4], y % 100);
    buf[4] = b'-';
    put2(&mut buf[5..7], m);
    buf[7] = b'-';
    put2(&mut buf[8..10], d);
    buf[10] = b'T';
    put2(&mut buf[11..13], sod / 3600);
    buf[13] = b':';
    put2(&mut buf[14..16], sod / 60 % 60);
    buf[16] = b':';
    put2(&mut buf[17..19], sod % 60);
    buf[19] = b'.';
    let len = if sub.is_multiple_of(1000) {
        let ms = sub / 1000;
        buf[20] = b'0' + (ms / 100) as u8;
        put2(&mut buf[21..23], ms % 100);
        buf[23] = b'Z';
        24
    } else {
        let mut v = sub;
        for i in (20..26).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        buf[26] = b'Z';
        27
    };
    out.extend_from_slice(&buf[..len]);
}

pub fn format_rfc3339(us: Micros) -> String {
    let mut v = Vec::with_capacity(27);
    write_rfc3339(us, &mut v);
    String::from_utf8(v).expect("ASCII")
}

/// Parses RFC 3339 (`2026-11-22T10:00:00Z`, fractional seconds up to
/// nanoseconds, `Z` or `±hh:mm`; a space may stand for `T`). None if invalid.
pub fn parse_rfc3339(s: &str) -> Option<Micros> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(i64::from(y), mo) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                frac_us = frac_us * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..6 {
            frac_us *= 10;
        }
    }
    let offset_s: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = i64::from(num(i + 1..i + 3)?);
            let om = i64::from(num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se.min(59)) - offset_s;
    Some(secs * 1_000_000 + frac_us)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A time given on a command line or in a query: RFC 3339, or a duration
/// (`30d`, `15m`) meaning that long before `now`.
pub fn parse_when(text: &str, now: Micros) -> Result<Micros, String> {
    if let Some(t) = parse_rfc3339(text) {
        return Ok(t);
    }
    super::quantity::parse_duration(text)
        .map(|d| now - d.as_micros() as i64)
        .map_err(|e| format!("`{text}` is neither a duration (30d) nor an RFC 3339 time: {e}"))
}

/// Serde for a [`Micros`] written as RFC 3339 text (`#[serde(with = "rfc3339")]`).
pub mod rfc3339 {
    use super::{format_rfc3339, parse_rfc3339, Micros};

    pub fn serialize<S: serde::Serializer>(ts: &Micros, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*ts))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Micros, D::Error> {
        let text: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        parse_rfc3339(&text).ok_or_else(|| serde::de::Error::custom(format!("`ts` {text:?} is not an RFC 3339 time")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00.125Z"), Some(1_795_341_600_125_000));
        assert_eq!(format_rfc3339(1_795_341_600_125_000), "2026-11-22T10:00:00.125Z");
        assert_eq!(parse_rfc3339("2026-11-22T11:00:00+01:00"), parse_rfc3339("2026-11-22T10:00:00Z"));
        assert_eq!(format_rfc3339(1), "1970-01-01T00:00:00.000001Z");
        assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), None);
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z").map(format_rfc3339).as_deref(),
            Some("2024-02-29T00:00:00.000Z")
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T10:00:00",
            "2026-13-01T00:00:00Z",
            "2026-11-22T10:00:00.Z",
            "x026-11-22T10:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(us in 0i64..253_402_300_799_000_000) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(us)), Some(us));
        }
    }
}
