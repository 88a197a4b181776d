//! Expectations against what a test run captured: pass, or what was
//! expected, what happened instead (the nearest matching records) and the
//! alert timeline around it.

use crate::compile::pipetest::{Check, Expectation, Phase, TextMatch, When};
use crate::model::record::{Reading, Record};
use crate::model::time::Micros;
use crate::stages::alert::Hold;

use super::{offset, Captured, Event, EventKind, Sent};

/// Records shown around a miss.
const NEAREST: usize = 5;

/// An expectation that did not hold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Miss {
    pub line: usize,
    pub col: usize,
    /// The expectation, in words.
    pub expected: String,
    /// What happened instead: the nearest matching records.
    pub found: Vec<String>,
    /// The alert timeline around it, for alert and notification expectations.
    pub timeline: Vec<String>,
}

/// Checks every expectation; the ones that did not hold.
pub fn check(c: &Captured, expect: &[Expectation]) -> Vec<Miss> {
    expect.iter().filter_map(|e| check_one(c, e)).collect()
}

fn window(c: &Captured, when: When) -> (Micros, Micros) {
    let us = |d: std::time::Duration| d.as_micros() as i64;
    match when {
        When::At { at, within } => (c.origin + us(at) - us(within), c.origin + us(at) + us(within)),
        When::Between(a, b) => (c.origin + us(a), c.origin + us(b)),
        When::Always => (Micros::MIN, Micros::MAX),
    }
}

/// Where to look for the nearest records when one is missing.
fn target(c: &Captured, when: When) -> Micros {
    let (lo, hi) = window(c, when);
    match when {
        When::Always => c.origin,
        When::At { .. } | When::Between(..) => lo / 2 + hi / 2,
    }
}

fn describe_when(when: When) -> String {
    let f = |d: std::time::Duration| offset(0, d.as_micros() as i64);
    match when {
        When::At { at, within } if within.is_zero() => format!("at {}", f(at)),
        When::At { at, within } => format!("at {} ± {}", f(at), f(within)),
        When::Between(a, b) => format!("between {} and {}", f(a), f(b)),
        When::Always => "at any time".into(),
    }
}

/// The expectation in words: `reading boiler.temp.b at 12m: suspect [voted_out]`.
pub fn describe(e: &Expectation) -> String {
    let when = describe_when(e.when);
    match &e.check {
        Check::Reading { channel, fused, quality, flags, value, voted_out } => {
            let mut what = Vec::new();
            if let Some(q) = quality {
                what.push(q.as_str().to_string());
            }
            if let Some(f) = flags {
                what.push(format!("[{}]", f.names().collect::<Vec<_>>().join(", ")));
            }
            if let Some((v, tol)) = value {
                what.push(if *tol > 0.0 { format!("value {v} ± {tol}") } else { format!("value {v}") });
            }
            if let Some(v) = voted_out {
                what.push(format!("voted out [{}]", v.join(", ")));
            }
            let kind = if *fused { "fused" } else { "reading" };
            let every = if matches!(e.when, When::Between(..)) { "every " } else { "" };
            format!("{every}{kind} {channel} {when}: {}", if what.is_empty() { "any".into() } else { what.join(" ") })
        }
        Check::Anomaly { channel, detector, none } => {
            let by = detector.as_ref().map(|d| format!(" by {d}")).unwrap_or_default();
            format!("{} on {channel}{by} {when}", if *none { "no anomaly" } else { "an anomaly" })
        }
        Check::Alert { rule, channel, state, none } => {
            let on = channel.as_ref().map(|c| format!(" on {c}")).unwrap_or_default();
            format!("{}alert {rule}{on} {} {when}", if *none { "no " } else { "" }, state.as_str())
        }
        Check::Notification { notifier, rule, channel, state, title, body, message } => {
            let mut s = format!("a notification to {notifier}");
            if let Some(r) = rule {
                s += &format!(" of {r}");
            }
            if let Some(c) = channel {
                s += &format!(" on {c}");
            }
            if let Some(st) = state {
                s += &format!(" ({})", st.as_str());
            }
            s += &format!(" {when}");
            for (what, m) in [("title", title), ("body", body), ("message", message)] {
                match m {
                    Some(TextMatch::Equals(t)) => s += &format!(", {what} {t:?}"),
                    Some(TextMatch::Contains(t)) => s += &format!(", {what} containing {t:?}"),
                    Some(TextMatch::Json(j)) => s += &format!(", {what} with JSON {j}"),
                    None => {}
                }
            }
            s
        }
    }
}

fn miss(e: &Expectation, found: Vec<String>, timeline: Vec<String>) -> Option<Miss> {
    Some(Miss { line: e.line, col: e.col, expected: describe(e), found, timeline })
}

fn check_one(c: &Captured, e: &Expectation) -> Option<Miss> {
    let (lo, hi) = window(c, e.when);
    match &e.check {
        Check::Reading { channel, fused, .. } => {
            let of_channel: Vec<&Reading> = c
                .records
                .iter()
                .filter_map(|r| match r {
                    Record::Reading(r) if &*r.channel == channel && (!fused || r.fusion.is_some()) => Some(r),
                    _ => None,
                })
                .collect();
            let ok = |r: &Reading| reading_matches(&e.check, r);
            let pass = match e.when {
                When::At { within, .. } if within.is_zero() => {
                    of_channel.iter().rev().find(|r| r.ts <= hi).is_some_and(|r| ok(r))
                }
                When::At { .. } => of_channel.iter().any(|r| r.ts >= lo && r.ts <= hi && ok(r)),
                When::Between(..) | When::Always => {
                    let inside: Vec<_> = of_channel.iter().filter(|r| r.ts >= lo && r.ts <= hi).collect();
                    !inside.is_empty() && inside.iter().all(|r| ok(r))
                }
            };
            if pass {
                return None;
            }
            let mut near: Vec<&Reading> = match e.when {
                // The readings in the window that do not match, first.
                When::Between(..) => {
                    of_channel.iter().filter(|r| r.ts >= lo && r.ts <= hi && !ok(r)).copied().collect()
                }
                When::At { .. } | When::Always => Vec::new(),
            };
            if near.is_empty() {
                near = nearest(&of_channel, target(c, e.when), |r| r.ts);
            }
            near.truncate(NEAREST);
            let mut found: Vec<String> = near.iter().map(|r| show_reading(c, r)).collect();
            if found.is_empty() {
                found.push(
                    format!("no {} reading of {channel} in the test", if *fused { "fused" } else { "" })
                        .replace("  ", " "),
                );
            }
            miss(e, found, Vec::new())
        }
        Check::Anomaly { channel, detector, none } => {
            let all: Vec<&crate::model::record::Anomaly> = c
                .records
                .iter()
                .filter_map(|r| match r {
                    Record::Anomaly(a)
                        if a.channel == *channel && detector.as_ref().is_none_or(|d| *d == a.detector) =>
                    {
                        Some(&**a)
                    }
                    _ => None,
                })
                .collect();
            let inside: Vec<_> = all.iter().filter(|a| a.ts >= lo && a.ts <= hi).copied().collect();
            if inside.is_empty() == *none {
                return None;
            }
            let shown = if *none { inside } else { nearest(&all, target(c, e.when), |a| a.ts) };
            let mut found: Vec<String> = shown
                .iter()
                .take(NEAREST)
                .map(|a| {
                    let v = a.value.map(|v| format!(" value {v}")).unwrap_or_default();
                    let score = a.score.map(|s| format!(" score {s:.2}")).unwrap_or_default();
                    format!(
                        "{:>9}  anomaly on {} by {} ({}){v}{score}",
                        offset(c.origin, a.ts),
                        a.channel,
                        a.detector,
                        a.method
                    )
                })
                .collect();
            if found.is_empty() {
                found.push(format!("no anomaly on {channel} in the test"));
            }
            miss(e, found, Vec::new())
        }
        Check::Alert { rule, channel, state, none } => {
            let of_rule = |ev: &&Event| ev.rule == *rule && channel.as_ref().is_none_or(|ch| *ch == ev.channel);
            let is_state = |ev: &&Event| match (&ev.kind, state) {
                (EventKind::Pending { .. }, Phase::Pending)
                | (EventKind::Firing { .. }, Phase::Firing)
                | (EventKind::Resolved, Phase::Resolved) => true,
                (
                    EventKind::Pending { .. }
                    | EventKind::Cleared { .. }
                    | EventKind::Firing { .. }
                    | EventKind::Repeat
                    | EventKind::Released
                    | EventKind::Resolved
                    | EventKind::Sent { .. }
                    | EventKind::Held { .. },
                    _,
                ) => false,
            };
            let hits = c.events.iter().filter(of_rule).filter(is_state).filter(|ev| ev.ts >= lo && ev.ts <= hi).count();
            if (hits == 0) == *none {
                return None;
            }
            let found = match (*none, c.events.iter().filter(of_rule).filter(is_state).count()) {
                (true, _) => vec![format!("{hits} {} transition(s) of {rule} in the window", state.as_str())],
                (false, 0) => vec![format!("{rule} never became {} in the test", state.as_str())],
                (false, _) => {
                    let list: Vec<&Event> = c.events.iter().filter(of_rule).filter(is_state).collect();
                    nearest(&list, target(c, e.when), |ev| ev.ts)
                        .iter()
                        .take(NEAREST)
                        .map(|ev| show_event(c, ev))
                        .collect()
                }
            };
            miss(e, found, timeline(c, |ev| of_rule(&ev), target(c, e.when)))
        }
        Check::Notification { notifier, rule, channel, state, title, body, message } => {
            let of_it = |s: &&Sent| {
                s.notifier == *notifier
                    && rule.as_ref().is_none_or(|r| *r == s.rule)
                    && channel.as_ref().is_none_or(|ch| *ch == s.channel)
                    && state.is_none_or(|st| st == s.state)
            };
            let texts_match = |s: &Sent| {
                text_matches(title.as_ref(), &s.title)
                    && text_matches(body.as_ref(), &s.body)
                    && text_matches(message.as_ref(), &s.message)
            };
            if c.sent.iter().filter(of_it).any(|s| s.ts >= lo && s.ts <= hi && texts_match(s)) {
                return None;
            }
            let list: Vec<&Sent> = c.sent.iter().filter(of_it).collect();
            let mut found: Vec<String> = nearest(&list, target(c, e.when), |s| s.ts)
                .iter()
                .take(NEAREST)
                .map(|s| {
                    let mut line = format!(
                        "{:>9}  {} to {}: {} on {}, title {:?}",
                        offset(c.origin, s.ts),
                        s.state.as_str(),
                        s.notifier,
                        s.rule,
                        s.channel,
                        s.title
                    );
                    if body.is_some() {
                        line += &format!(", body {:?}", s.body);
                    }
                    if message.is_some() {
                        line += &format!(", message {:?}", s.message);
                    }
                    line
                })
                .collect();
            if found.is_empty() {
                found.push(format!("nothing was sent to {notifier}"));
            }
            let rules: Vec<&str> = list.iter().map(|s| s.rule.as_str()).collect();
            let tl = timeline(
                c,
                |ev| rule.as_ref().map_or(rules.contains(&ev.rule.as_str()) || rules.is_empty(), |r| *r == ev.rule),
                target(c, e.when),
            );
            miss(e, found, tl)
        }
    }
}

fn reading_matches(check: &Check, r: &Reading) -> bool {
    let Check::Reading { quality, flags, value, voted_out, .. } = check else { return false };
    quality.is_none_or(|q| r.quality == q)
        && flags.is_none_or(|f| if f.is_empty() { r.flags.is_empty() } else { r.flags.contains(f) })
        && value.is_none_or(|(v, tol)| r.value.is_some_and(|x| (x - v).abs() <= tol + 1e-9 * v.abs().max(1.0)))
        && voted_out.as_ref().is_none_or(|want| {
            let got: Vec<&str> =
                r.fusion.as_ref().map(|f| f.voted_out.iter().map(|c| &**c).collect()).unwrap_or_default();
            want.len() == got.len() && want.iter().all(|w| got.contains(&w.as_str()))
        })
}

fn text_matches(m: Option<&TextMatch>, text: &str) -> bool {
    match m {
        None => true,
        Some(TextMatch::Equals(t)) => t == text,
        Some(TextMatch::Contains(t)) => text.contains(t.as_str()),
        Some(TextMatch::Json(want)) => {
            serde_json::from_str::<serde_json::Value>(text).is_ok_and(|got| json_subset(want, &got))
        }
    }
}

/// `want` is in `got`: objects by their keys (recursively), other values equal.
pub fn json_subset(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().all(|(k, v)| g.get(k).is_some_and(|gv| json_subset(v, gv))),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (w, g) => w == g,
    }
}

/// The items closest in time to `t`, nearest first, then in time order.
fn nearest<'a, T>(items: &[&'a T], t: Micros, ts: impl Fn(&T) -> Micros) -> Vec<&'a T> {
    let mut v: Vec<&T> = items.to_vec();
    v.sort_by_key(|x| (ts(x) - t).abs());
    v.truncate(NEAREST);
    v.sort_by_key(|x| ts(x));
    v
}

fn show_reading(c: &Captured, r: &Reading) -> String {
    let value = r.value.map_or("no value".to_string(), |v| {
        format!("{v}{}", r.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default())
    });
    let flags: Vec<&str> = r.flags.names().collect();
    let flags = if flags.is_empty() { String::new() } else { format!(" [{}]", flags.join(", ")) };
    let voted = match &r.fusion {
        Some(f) if !f.voted_out.is_empty() => {
            format!(" voted out [{}]", f.voted_out.iter().map(|c| &**c).collect::<Vec<_>>().join(", "))
        }
        Some(_) | None => String::new(),
    };
    format!("{:>9}  {}  {value}  {}{flags}{voted}", offset(c.origin, r.ts), r.channel, r.quality.as_str())
}

/// One line of the alert timeline.
pub fn show_event(c: &Captured, ev: &Event) -> String {
    let t = offset(c.origin, ev.ts);
    let d = |d: std::time::Duration| offset(0, d.as_micros() as i64);
    let what = match &ev.kind {
        EventKind::Pending { hold } if hold.is_zero() => "pending    the condition holds".to_string(),
        EventKind::Pending { hold } => {
            format!("pending    the condition holds; held until `for` {} has passed", d(*hold))
        }
        EventKind::Cleared { after, hold } => {
            format!("inactive   the condition stopped after {}, before `for` {}: nothing sent", d(*after), d(*hold))
        }
        EventKind::Firing { repeat: Some(r) } => {
            format!("firing     told again every `repeat` {} while it fires", d(*r))
        }
        EventKind::Firing { repeat: None } => "firing     told once: no `repeat`".to_string(),
        EventKind::Repeat => "repeat     still firing, `repeat` has passed since the last notification".to_string(),
        EventKind::Released => "firing     the hold is over: notifying".to_string(),
        EventKind::Resolved => "resolved".to_string(),
        EventKind::Sent { notifier, state, title } => format!("  sent     {} to {notifier}: {title:?}", state.as_str()),
        EventKind::Held { why: Hold::Silence { until } } => {
            format!("  held     silenced until {}: nothing sent", offset(c.origin, *until))
        }
        EventKind::Held { why: Hold::Mute } => {
            "  held     in a mute window: sent when it ends, if still due".to_string()
        }
        EventKind::Held { why: Hold::Inhibited { by } } => {
            format!("  held     inhibited while `{by}` fires: sent when it ends, if still due")
        }
    };
    format!("{t:>9}  {}  {}  {what}", ev.rule, ev.channel)
}

/// The events `keep` selects, nearest `t` (a dozen around it).
fn timeline(c: &Captured, keep: impl Fn(&Event) -> bool, t: Micros) -> Vec<String> {
    let evs: Vec<&Event> = c.events.iter().filter(|e| keep(e)).collect();
    if evs.is_empty() {
        return Vec::new();
    }
    let at = evs.iter().position(|e| e.ts >= t).unwrap_or(evs.len() - 1);
    let from = at.saturating_sub(6);
    let to = (at + 6).min(evs.len());
    evs[from..to].iter().map(|e| show_event(c, e)).collect()
}
