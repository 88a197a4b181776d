//! The run-time template engine: the minijinja environment every template
//! and expression of a pipeline is rendered in (strict undefined, bounded
//! fuel, recursion and output, the domain filters), and the context a
//! reading gives a template. The compiler checks templates with the same
//! environment (`compile::templates`), so what `validate` accepts is what
//! runs.

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior, Value};

use super::record::Reading;
use super::time::write_rfc3339;

/// Most template instructions one render may execute.
pub const FUEL: u64 = 50_000;
/// Longest text one render may produce (64 KiB).
pub const MAX_OUTPUT: usize = 64 * 1024;

/// The environment every template of a pipeline is rendered in: strict
/// undefined, bounded fuel and recursion, and the domain filters `unit`,
/// `duration` and `timestamp` next to minijinja's built-ins (`round`,
/// `tojson`, …).
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    env.add_filter("unit", unit_filter);
    env.add_filter("duration", duration_filter);
    env.add_filter("timestamp", timestamp_filter);
    env
}

/// Whether a template produces JSON (it starts with `[`, or with `{` that
/// does not open a tag): such templates render with JSON escaping, so a
/// value inserted as `{{ title }}` is a JSON string whatever it holds.
pub fn looks_json(src: &str) -> bool {
    let t = src.trim_start();
    t.starts_with('[') || (t.starts_with('{') && !t[1..].starts_with(['{', '%', '#']))
}

/// The environment JSON templates render in.
pub fn json_environment() -> Environment<'static> {
    let mut env = environment();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Json);
    env
}

/// Renders `src` with `ctx`, failing when the text would exceed [`MAX_OUTPUT`].
pub fn render_capped(env: &Environment<'_>, src: &str, ctx: &Value) -> Result<String, Error> {
    let t = env.template_from_str(src)?;
    let mut out = Capped(Vec::new());
    match t.render_captured_to(ctx, &mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out.0).into_owned()),
        Err(e) if out.0.len() > MAX_OUTPUT => {
            Err(Error::new(ErrorKind::InvalidOperation, format!("output longer than {MAX_OUTPUT} bytes ({e})")))
        }
        Err(e) => Err(e),
    }
}

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            self.0.extend_from_slice(&buf[..(MAX_OUTPUT + 1 - self.0.len().min(MAX_OUTPUT)).min(buf.len())]);
            return Err(std::io::Error::other("template output too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `{{ value | unit }}` → `81.25 degC` (the record's unit), `{{ x | unit('bar') }}`.
fn unit_filter(state: &State, value: Value, unit: Option<String>) -> String {
    let unit = unit.or_else(|| state.lookup("unit").filter(|u| !u.is_none()).map(|u| u.to_string()));
    match unit {
        Some(u) if !u.is_empty() => format!("{value} {u}"),
        _ => value.to_string(),
    }
}

/// `{{ seconds | duration }}` → `1h 2m 5s`.
fn duration_filter(value: f64) -> Result<String, Error> {
    if !value.is_finite() {
        return Err(Error::new(ErrorKind::InvalidOperation, "duration of a value that is not a number"));
    }
    let mut s = value.abs().round() as u64;
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= size {
            parts.push(format!("{}{unit}", s / size));
            s %= size;
        }
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    Ok(format!("{}{}", if value < 0.0 { "-" } else { "" }, parts.join(" ")))
}

/// `{{ ts | timestamp('Europe/Berlin') }}` → `2026-01-01 01:00:00 CET`; the
/// zone is an IANA name, `UTC`, `local` or an offset (`+02:00`); `format=`
/// takes strftime syntax. `ts` is an RFC 3339 text or seconds since the epoch.
fn timestamp_filter(value: Value, zone: Option<String>, kwargs: Kwargs) -> Result<String, Error> {
    use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};
    let bad = |why: String| Error::new(ErrorKind::InvalidOperation, why);
    let format: Option<String> = kwargs.get("format")?;
    kwargs.assert_all_used()?;
    let at: DateTime<Utc> = if let Some(s) = value.as_str() {
        DateTime::parse_from_rfc3339(s).map_err(|e| bad(format!("`{s}` is not a timestamp: {e}")))?.to_utc()
    } else if let Ok(secs) = f64::try_from(value.clone()) {
        Utc.timestamp_micros((secs * 1e6) as i64).single().ok_or_else(|| bad(format!("{secs} is out of range")))?
    } else {
        return Err(bad(format!("{value} is not a timestamp")));
    };
    let fmt = format.as_deref().unwrap_or("%Y-%m-%d %H:%M:%S %Z");
    let check = |f: &str| {
        use chrono::format::{Item, StrftimeItems};
        if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
            Err(bad(format!("`{f}` is not a strftime format")))
        } else {
            Ok(())
        }
    };
    check(fmt)?;
    let zone = zone.unwrap_or_else(|| "UTC".into());
    Ok(match zone.as_str() {
        "UTC" | "utc" | "Z" => at.format(fmt).to_string(),
        "local" => at.with_timezone(&Local).format(fmt).to_string(),
        z if z.starts_with(['+', '-']) => {
            let off: FixedOffset = z.parse().map_err(|_| bad(format!("`{z}` is not an offset like +02:00")))?;
            at.with_timezone(&off).format(fmt).to_string()
        }
        z => {
            let tz: chrono_tz::Tz = z.parse().map_err(|_| bad(format!("`{z}` is not a time zone")))?;
            at.with_timezone(&tz).format(fmt).to_string()
        }
    })
}

/// A record with every field a template may use: the union of reading,
/// anomaly and alert fields. At run time absent fields are `none`.
pub fn sample_record(channel: &str) -> Value {
    Value::from_serialize(serde_json::json!({
        "kind": "reading",
        "ts": "2026-01-01T00:00:00.000Z",
        "channel": channel,
        "value": 81.25,
        "unit": "degC",
        "quality": "good",
        "flags": [],
        "source": "sample",
        "inputs": [],
        "voted_out": [],
        "detector": "sample",
        "method": "zscore",
        "score": 4.2,
        "expected": 80.0,
        "threshold": 4.0,
        "rule": "sample",
        "state": "firing",
        "severity": "warning",
        "title": "sample title",
        "body": "sample body",
        "fingerprint": "0000000000000000",
        "labels": {},
        "text": null,
        "recent": [80.5, 81.0, 81.25],
        "since": "2026-01-01T00:00:00.000Z",
        "firing_for": 0.0,
        "alerts": [{"rule": "sample", "state": "firing", "severity": "warning", "channel": channel,
                    "source": "sample", "value": 81.25, "title": "sample title", "body": "sample body",
                    "ts": "2026-01-01T00:00:00.000Z", "since": "2026-01-01T00:00:00.000Z",
                    "fingerprint": "0000000000000000", "labels": {}}],
        "count": 1,
        "group": {},
    }))
}

/// A reading as templates and expressions see it (the fields of its NDJSON line).
///
/// A map that reads the reading's fields when they are looked up, rather
/// than a map built of them: the alert stage makes one per record a rule
/// looks at, and most `when`s read two fields of nine (formatting the time
/// and listing the flags on every record cost thousands of instructions).
pub fn reading_context(r: &Reading) -> Value {
    Value::from_object(ReadingView {
        ts: r.ts,
        channel: r.channel.clone(),
        value: r.value,
        text: r.text.clone(),
        unit: r.unit.clone(),
        quality: r.quality,
        flags: r.flags,
        source: r.source.clone(),
    })
}

/// What [`reading_context`] shows of a reading.
#[derive(Debug)]
struct ReadingView {
    ts: super::time::Micros,
    channel: std::sync::Arc<str>,
    value: Option<f64>,
    text: Option<std::sync::Arc<str>>,
    unit: Option<std::sync::Arc<str>>,
    quality: super::record::Quality,
    flags: super::record::Flags,
    source: std::sync::Arc<str>,
}

/// The keys of a reading's context, in the order of its NDJSON line (and of
/// the `context!` map it replaces): serialized, it reads as it always did.
const READING_KEYS: &[&str] = &["kind", "ts", "channel", "value", "text", "unit", "quality", "flags", "source"];

impl minijinja::value::Object for ReadingView {
    fn repr(self: &std::sync::Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Map
    }

    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        let opt = |s: &Option<std::sync::Arc<str>>| s.as_deref().map_or(Value::from(()), Value::from);
        Some(match key.as_str()? {
            "kind" => Value::from("reading"),
            "ts" => {
                let mut ts = Vec::with_capacity(27);
                write_rfc3339(self.ts, &mut ts);
                Value::from(String::from_utf8_lossy(&ts).into_owned())
            }
            "channel" => Value::from(&*self.channel),
            "value" => Value::from(self.value),
            "text" => opt(&self.text),
            "unit" => opt(&self.unit),
            "quality" => Value::from(self.quality.as_str()),
            "flags" => Value::from(self.flags.names().collect::<Vec<_>>()),
            "source" => Value::from(&*self.source),
            _ => return None,
        })
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(READING_KEYS)
    }
}

/// One environment for the whole process, for expressions compiled once
/// and kept (alert `when`, pattern steps): they borrow their environment,
/// and sharing it means no allocation is leaked per run.
pub fn shared_environment() -> &'static Environment<'static> {
    static SHARED: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    SHARED.get_or_init(environment)
}

/// The text sent when a template fails: says so, with the raw record.
pub fn fallback(rule: &str, error: &str, ctx: &Value) -> String {
    let raw = serde_json::to_string(ctx).unwrap_or_else(|_| "{}".into());
    format!("[edgeguard] alert `{rule}` (template error: {error}) record: {raw}")
}

/// A minijinja error as one line: its kind and detail.
pub fn describe(e: &minijinja::Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(d) = e.detail() {
        s += ": ";
        s += d;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The context as a map of its fields, as it was built before it read
    /// them lazily: both must look the same to every template.
    fn built(r: &Reading) -> Value {
        let mut ts = Vec::with_capacity(27);
        write_rfc3339(r.ts, &mut ts);
        minijinja::context! {
            kind => "reading",
            ts => String::from_utf8_lossy(&ts),
            channel => &*r.channel,
            value => r.value,
            text => r.text.as_deref(),
            unit => r.unit.as_deref(),
            quality => r.quality.as_str(),
            flags => r.flags.names().collect::<Vec<_>>(),
            source => &*r.source,
        }
    }

    #[test]
    fn a_reading_context_reads_like_the_map_of_its_fields() {
        use super::super::record::{Flags, Quality, Record};
        let env = environment();
        let Record::Reading(mut plain) = Reading::sample("boiler.temp", 1_700_000_000, Some(96.5)) else { panic!() };
        plain.unit = Some("degC".into());
        let mut failed = plain.clone();
        (failed.value, failed.quality) = (None, Quality::Bad);
        failed.flags.insert(Flags::TIMEOUT);
        failed.flags.insert(Flags::STALE);
        failed.text = Some("E42".into());
        for r in [plain, failed] {
            let (lazy, map) = (reading_context(&r), built(&r));
            assert_eq!(serde_json::to_string(&lazy).unwrap(), serde_json::to_string(&map).unwrap());
            for src in [
                "{{ channel }} {{ value }} {{ unit }} {{ text }} {{ quality }} {{ flags }} {{ source }} {{ ts }} {{ kind }}",
                "{{ value is none }} {{ 'stale' in flags }} {{ missing is defined }} {{ value | round(1) }}",
                "{% for k, v in ctx | items %}{{ k }}={{ v }};{% endfor %}",
                "{{ ctx | tojson }} {{ ctx | length }}",
            ] {
                let with = |c: &Value| minijinja::context! { ctx => c.clone(), ..c.clone() };
                assert_eq!(render_capped(&env, src, &with(&lazy)).ok(), render_capped(&env, src, &with(&map)).ok(), "{src}");
            }
        }
    }

    #[test]
    fn renders_are_bounded_in_output_and_fuel() {
        let env = environment();
        let ctx = sample_record("a.b");
        let long = "{% for i in range(20000) %}0123456789{% endfor %}";
        let e = render_capped(&env, long, &ctx).unwrap_err();
        assert!(e.to_string().contains("output longer than 65536 bytes"), "{e}");
        let spin = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        assert_eq!(render_capped(&env, spin, &ctx).unwrap_err().kind(), ErrorKind::OutOfFuel);
        let rec = "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}";
        assert!(render_capped(&env, rec, &ctx).is_err());
        let big = render_capped(&env, "{{ 'x' * 100000000 }}", &ctx);
        assert!(big.is_err(), "{:?}", big.map(|s| s.len()));
    }

    #[test]
    fn domain_filters() {
        let env = environment();
        let r = |src: &str| render_capped(&env, src, &sample_record("a.b")).unwrap();
        assert_eq!(r("{{ value | unit }}"), "81.25 degC");
        assert_eq!(r("{{ 3725 | duration }}"), "1h 2m 5s");
        assert_eq!(r("{{ ts | timestamp('Europe/Berlin', format='%H:%M %Z') }}"), "01:00 CET");
        assert_eq!(r("{{ ts | timestamp('+05:30', format='%H:%M') }}"), "05:30");
        assert!(render_capped(&env, "{{ ts | timestamp('Mars/Base') }}", &sample_record("a")).is_err());
        assert!(
            looks_json("{\"a\": {{ x }}}") && looks_json(" [1]") && !looks_json("{{ x }}") && !looks_json("{% if %}")
        );
    }
}
