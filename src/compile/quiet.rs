//! Compiles what makes alerts quieter: `over`, `resolve_when`, `flapping`,
//! `inhibit`, `group` (of a rule or a notifier) and `mute` windows.

use std::time::Duration;

use super::diag::{did_you_mean, Code};
use super::plan::*;
use super::{key, templates, Cx};
use crate::model::channel::{channel_matcher, is_glob};
use crate::spec::*;

/// Labels every alert has, beside its rule's `labels`.
pub const BUILTIN_LABELS: [&str; 4] = ["rule", "channel", "source", "severity"];

/// What `when` of an `over: sources` rule sees (and its templates, beside the alert's fields).
pub fn source_sample() -> minijinja::Value {
    minijinja::context! {
        kind => "source",
        ts => "2026-01-01T00:00:00.000Z",
        source => "sample",
        channel => "sample",
        value => minijinja::Value::from(()),
        down => true,
        error => "timeout",
        failures => 3,
        ..crate::model::template::sample_record("sample")
    }
}

/// The quiet settings of rule `rule` (at `path`), in `out`.
pub(super) fn rule(cx: &mut Cx, spec: &Spec, path: &str, rule: &str, a: &AlertSpec, out: &mut AlertPlan) {
    let sample = match a.over {
        AlertOver::Sources => source_sample(),
        AlertOver::Channels => crate::model::template::sample_record("sample.channel"),
    };
    if a.relay {
        for (k, given) in [
            ("over", a.over != AlertOver::Channels),
            ("resolve_when", a.resolve_when.is_some()),
            ("flapping", a.flapping.is_some()),
            ("inhibit", a.inhibit.is_some()),
            ("mute", !a.mute.is_empty()),
        ] {
            if given {
                cx.err_key(
                    Code::Conflict,
                    &key(path, k),
                    format!("`{k}` does not apply to a relay rule: the gateway's rule decided when its alert fired"),
                );
            }
        }
    }
    if let Some(r) = &a.resolve_when {
        templates::check_expression(cx, &key(path, "resolve_when"), r, &sample);
    }
    let own: Vec<&str> = BUILTIN_LABELS.iter().copied().chain(a.labels.keys().map(String::as_str)).collect();
    out.over = a.over;
    out.resolve_when = a.resolve_when.clone();
    out.flapping = a.flapping.as_ref().map(|f| {
        let p = key(path, "flapping");
        let changes = f.changes.unwrap_or(4);
        if changes < 2 {
            cx.err(Code::InvalidValue, &key(&p, "changes"), "flapping takes at least 2 changes");
        }
        FlappingPlan {
            changes: changes.max(2),
            within: cx.positive_duration(&key(&p, "within"), f.within.as_deref(), Duration::from_secs(600)),
        }
    });
    out.inhibit = a.inhibit.as_ref().map(|i| {
        let p = key(path, "inhibit");
        let mut labels = own.clone();
        for (n, pattern) in i.rules.iter().enumerate() {
            let at = super::diag_index(&key(&p, "rules"), n);
            let matched: Vec<&String> = if is_glob(pattern) {
                match channel_matcher(pattern) {
                    Ok(m) => spec.alerts.keys().filter(|r| m.is_match(r) && *r != rule).collect(),
                    Err(e) => {
                        cx.err(Code::InvalidValue, &at, format!("`{pattern}` is not a valid glob: {e}"));
                        continue;
                    }
                }
            } else {
                spec.alerts.keys().filter(|r| *r == pattern && *r != rule).collect()
            };
            if matched.is_empty() {
                let d = cx.err(Code::UnknownReference, &at, format!("`{pattern}` names no other alert rule"));
                d.hint = did_you_mean(pattern, spec.alerts.keys().filter(|r| *r != rule).map(String::as_str));
            }
            for r in matched {
                labels.extend(spec.alerts[r].labels.keys().map(String::as_str));
            }
        }
        if i.rules.is_empty() {
            cx.err(Code::InvalidValue, &key(&p, "rules"), "name the rules whose alerts this rule holds");
        }
        for (n, l) in i.equal.iter().enumerate() {
            check_label(cx, &super::diag_index(&key(&p, "equal"), n), l, &labels);
        }
        InhibitPlan { rules: i.rules.clone(), equal: i.equal.clone() }
    });
    out.group = a.group.as_ref().map(|g| group(cx, &key(path, "group"), g, &own));
    out.mute =
        a.mute.iter().enumerate().filter_map(|(n, m)| mute(cx, &super::diag_index(&key(path, "mute"), n), m)).collect();
}

/// A `group` of a rule or notifier; `labels` are those its alerts may have.
pub(super) fn group(cx: &mut Cx, path: &str, g: &GroupSpec, labels: &[&str]) -> GroupPlan {
    for (n, l) in g.by.iter().enumerate() {
        check_label(cx, &super::diag_index(&key(path, "by"), n), l, labels);
    }
    GroupPlan {
        by: g.by.clone(),
        wait: cx.duration(&key(path, "wait"), g.wait.as_deref(), Duration::from_secs(30)),
        interval: cx.positive_duration(&key(path, "interval"), g.interval.as_deref(), Duration::from_secs(300)),
    }
}

/// Labels a notifier's alerts may have: the built-in ones and every rule's.
pub(super) fn all_labels(spec: &Spec) -> Vec<&str> {
    let mut v: Vec<&str> = BUILTIN_LABELS.to_vec();
    v.extend(spec.alerts.values().flat_map(|a| a.labels.keys().map(String::as_str)));
    v
}

fn check_label(cx: &mut Cx, path: &str, label: &str, labels: &[&str]) {
    if !labels.contains(&label) {
        let d = cx.err(Code::UnknownLabel, path, format!("no alert here has a label `{label}`"));
        d.hint = did_you_mean(label, labels.iter().copied());
        if d.hint.is_none() {
            d.hint = Some(format!("labels: {}", labels.join(", ")));
        }
    }
}

/// `HH:MM` as minutes after midnight (`24:00` is the end of the day).
fn minutes(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

fn mute(cx: &mut Cx, path: &str, m: &MuteWindowSpec) -> Option<MuteWindow> {
    let mut ok = true;
    let mut at = |cx: &mut Cx, k: &str, text: &str| {
        let t = minutes(text);
        if t.is_none() {
            cx.err(Code::InvalidQuantity, &key(path, k), format!("`{text}` is not a time of day `HH:MM`"));
            ok = false;
        }
        t.unwrap_or(0)
    };
    let start = at(cx, "start", &m.start);
    let end = at(cx, "end", &m.end);
    let tz = m.tz.clone().unwrap_or_else(|| "UTC".into());
    if tz.parse::<chrono_tz::Tz>().is_err() {
        let d = cx.err(Code::UnknownTimeZone, &key(path, "tz"), format!("`{tz}` is not an IANA time zone"));
        d.hint = did_you_mean(&tz, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()))
            .or_else(|| Some("write a zone name like `Europe/Berlin` or `America/Chicago`".into()));
        ok = false;
    }
    if ok && start == end {
        cx.err_key(Code::Useless, path, "this window starts when it ends: it never mutes");
        return None;
    }
    let days = m
        .days
        .iter()
        .map(|d| match d {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        })
        .collect();
    ok.then_some(MuteWindow { days, start, end, tz })
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_of_day() {
        assert_eq!(super::minutes("02:00"), Some(120));
        assert_eq!(super::minutes("2:30"), Some(150));
        assert_eq!(super::minutes("24:00"), Some(1440));
        for bad in ["24:01", "2", "02:5", "ab:cd", "", ":00", "12:60"] {
            assert_eq!(super::minutes(bad), None, "{bad}");
        }
    }
}
