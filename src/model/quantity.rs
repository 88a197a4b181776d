//! Parsers for the quantities written as strings in a spec: durations
//! (`500ms`, `1h30m`, `90d`) and rates (`5/s`, `30/min`, `2/10s`).

use std::time::Duration;

/// Parses `500ms`, `10s`, `1.5s`, `5m`, `2h`, `90d`, `1w`, `1y` (365 days), or a sum like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("`{text}` is not a duration; write a number and a unit, like `500ms`, `10s`, `5m`"));
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| format!("`{}` is not a number", &rest[..num_end]))?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = &rest[unit_end..];
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            // 365 days: rollup tiers are kept for years (`keep: 1y`).
            "y" | "year" | "years" => 31_536_000.0,
            "" => return Err(format!("`{text}` has no unit; write `{n}s` for seconds")),
            u => return Err(format!("unknown unit `{u}` in `{text}`; use ms, s, m, h, d or w")),
        };
        total += n * secs;
    }
    if !total.is_finite() || total > 3.2e9 {
        return Err(format!("`{text}` is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a rate into units per second: `5/s`, `30/min`, `2/10s`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (n, per) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate; write an amount per time, like `5/s` or `30/min`"))?;
    let n: f64 = n.trim().parse().map_err(|_| format!("`{}` is not a number", n.trim()))?;
    let per = per.trim();
    let per = if per.starts_with(|c: char| c.is_ascii_digit()) { per.to_string() } else { format!("1{per}") };
    let d = parse_duration(&per)?;
    if d.is_zero() || n < 0.0 || !n.is_finite() {
        return Err(format!("`{text}` must be a positive amount over a non-zero time"));
    }
    Ok(n / d.as_secs_f64())
}

/// Parses a size in bytes: `65536`, `64KiB`, `1MiB`, `500kB`, `2MB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{text}` is not a size; write bytes, like `256KiB` or `1MB`"))?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("unknown unit `{u}` in `{text}`; use B, kB, MB, GB, KiB, MiB or GiB")),
    };
    let v = n * mult;
    if !v.is_finite() || v > 1e15 || v.fract() != 0.0 {
        return Err(format!("`{text}` is not a whole number of bytes"));
    }
    Ok(v as u64)
}

/// Formats a duration the way a spec would write it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    if ms >= 1000 {
        return format!("{}s", d.as_secs_f64());
    }
    format!("{ms}ms")
}

/// serde helpers so plans print durations as people write them.
pub mod serde_dur {
    use super::format_duration;
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub mod opt {
        use super::*;
        pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&format_duration(*d)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86400));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("5/s").unwrap(), 5.0);
        assert_eq!(parse_rate("30/min").unwrap(), 0.5);
        assert_eq!(parse_rate("2/10s").unwrap(), 0.2);
        assert!(parse_rate("5").is_err());
        assert!(parse_rate("5/0s").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["500ms", "10s", "5m", "2h", "90d", "1.5s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }

    #[test]
    fn bytes_parse() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("256KiB"), Ok(262_144));
        assert_eq!(parse_bytes("1MB"), Ok(1_000_000));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert!(parse_bytes("1.5B").is_err());
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5 parsecs").unwrap_err().contains("unknown unit"));
    }
}
