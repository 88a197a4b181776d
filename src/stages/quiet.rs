//! What the alert stage uses to hold notifications back and to bundle them:
//! mute windows (recurring local times in a named time zone) and groups
//! (one notification for the alerts of equal label values that came within
//! `group.wait`, then at most one every `group.interval`).
//!
//! Both run on the alert stage's clock (the records' time), so a
//! virtual-clock run and a `--once` run under cron behave like one long run;
//! groups are saved with the rest of the alert state.

use chrono::{Datelike, Timelike};
use indexmap::IndexMap;
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

use crate::compile::plan::MuteWindow;
use crate::model::record::{Alert, Notification, Transition};
use crate::model::time::Micros;

/// A mute window ready to ask.
#[derive(Debug, Clone)]
pub struct Mute {
    /// Starts on these days (0 = Monday).
    days: [bool; 7],
    start: u32,
    end: u32,
    tz: chrono_tz::Tz,
}

impl Mute {
    pub fn new(w: &MuteWindow) -> Result<Mute, String> {
        let tz = w.tz.parse::<chrono_tz::Tz>().map_err(|_| format!("`{}` is not an IANA time zone", w.tz))?;
        let mut days = [w.days.is_empty(); 7];
        for &d in &w.days {
            days[usize::from(d % 7)] = true;
        }
        Ok(Mute { days, start: w.start, end: w.end, tz })
    }

    /// Whether `at` falls in the window (local wall-clock time in its zone).
    pub fn covers(&self, at: Micros) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp_micros(at) else { return false };
        let local = utc.with_timezone(&self.tz);
        let minute = local.hour() * 60 + local.minute();
        let day = local.weekday().num_days_from_monday() as usize;
        if self.start < self.end {
            self.days[day] && (self.start..self.end).contains(&minute)
        } else {
            // Past midnight: from `start` on a listed day to `end` the day after.
            (self.days[day] && minute >= self.start) || (self.days[(day + 6) % 7] && minute < self.end)
        }
    }
}

/// One alert waiting in a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grouped {
    pub alert: Alert,
    #[serde(default)]
    pub source: String,
}

/// Alerts bound for one notifier with equal values of the group's labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub notifier: String,
    /// The rule whose own `group` made it; `None`: the notifier's `group`.
    #[serde(default)]
    pub rule: Option<String>,
    pub labels: IndexMap<String, String>,
    pub alerts: Vec<Grouped>,
    /// When it sends next (or is dropped, if nothing came).
    pub due: Micros,
    /// µs between notifications.
    pub interval: Micros,
    #[serde(default)]
    pub sent: Option<Micros>,
}

impl Group {
    /// Adds `a`, or replaces the alert of its fingerprint already waiting.
    pub fn add(&mut self, a: Grouped) {
        match self.alerts.iter_mut().find(|g| g.alert.fingerprint == a.alert.fingerprint) {
            Some(g) => *g = a,
            None => self.alerts.push(a),
        }
    }

    /// One notification for every alert waiting (they are taken).
    pub fn take(&mut self, now: Micros) -> Notification {
        let alerts = std::mem::take(&mut self.alerts);
        self.sent = Some(now);
        self.due = now + self.interval;
        let firing = alerts.iter().filter(|g| g.alert.state != Transition::Resolved).count();
        let rank = |s: &str| match s {
            "critical" => 2,
            "warning" => 1,
            _ => 0,
        };
        let severity = alerts.iter().map(|g| g.alert.severity.as_str()).max_by_key(|s| rank(s)).unwrap_or("warning");
        let first = &alerts[0].alert;
        let one_rule = alerts.iter().all(|g| g.alert.rule == first.rule);
        let rule = self.rule.clone().unwrap_or_else(|| if one_rule { first.rule.clone() } else { "group".into() });
        let (title, channel, value) = if alerts.len() == 1 {
            (first.title.clone(), first.channel.clone(), first.value)
        } else {
            let resolved = alerts.len() - firing;
            let mut t = format!("{} alerts: {firing} firing", alerts.len());
            if resolved > 0 {
                t += &format!(", {resolved} resolved");
            }
            (t, format!("{} channels", alerts.len()), None)
        };
        let body = alerts
            .iter()
            .map(|g| format!("[{}] {}", g.alert.state.as_str(), g.alert.title))
            .collect::<Vec<_>>()
            .join("\n");
        let summary = Alert {
            ts: now,
            rule,
            state: if firing > 0 { Transition::Firing } else { Transition::Resolved },
            severity: severity.to_string(),
            channel,
            value,
            title,
            body,
            fingerprint: super::alert::fingerprint(&format!("group:{}", self.notifier), &self.key_text()),
            labels: self.labels.clone(),
            from_input: false,
        };
        let list: Vec<serde_json::Value> = alerts.iter().map(alert_context).collect();
        let context = context! {
            alerts => list,
            count => alerts.len(),
            group => &self.labels,
            ..Value::from_serialize(&summary)
        };
        Notification {
            alert: summary,
            notify: std::sync::Arc::from(vec![self.notifier.clone()]),
            context,
            errors: Vec::new(),
            relayed: false,
            grouped: true,
        }
    }

    fn key_text(&self) -> String {
        let mut s = self.rule.clone().unwrap_or_default();
        for (k, v) in &self.labels {
            s += &format!("\u{1f}{k}={v}");
        }
        s
    }
}

/// An alert as a group's templates see it in `alerts`: its record's fields
/// and `source`.
pub fn alert_context(g: &Grouped) -> serde_json::Value {
    let mut v = serde_json::to_value(&g.alert).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("source".into(), g.source.clone().into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Micros {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros()
    }

    #[test]
    fn a_sunday_window_in_berlin() {
        // Sunday 02:00–04:00 Europe/Berlin.
        let m = Mute::new(&MuteWindow { days: vec![6], start: 120, end: 240, tz: "Europe/Berlin".into() }).unwrap();
        // 2026-03-01 is a Sunday; Berlin is UTC+1 in winter.
        assert!(!m.covers(at("2026-03-01T00:59:00Z")));
        assert!(m.covers(at("2026-03-01T01:00:00Z")));
        assert!(m.covers(at("2026-03-01T02:59:59Z")));
        assert!(!m.covers(at("2026-03-01T03:00:00Z")));
        // A Monday at the same hour: not muted.
        assert!(!m.covers(at("2026-03-02T01:30:00Z")));
        // Summer time (UTC+2): the window follows the wall clock.
        assert!(m.covers(at("2026-06-07T00:30:00Z")));
        assert!(!m.covers(at("2026-06-07T02:30:00Z")));
    }

    #[test]
    fn a_window_past_midnight_ends_the_next_day() {
        // Fridays 22:00 to 06:00 UTC.
        let m = Mute::new(&MuteWindow { days: vec![4], start: 22 * 60, end: 6 * 60, tz: "UTC".into() }).unwrap();
        assert!(m.covers(at("2026-03-06T23:00:00Z")), "Friday night");
        assert!(m.covers(at("2026-03-07T05:59:00Z")), "Saturday morning");
        assert!(!m.covers(at("2026-03-07T06:00:00Z")));
        assert!(!m.covers(at("2026-03-05T23:00:00Z")), "Thursday night");
        assert!(!m.covers(at("2026-03-06T05:00:00Z")), "Friday morning belongs to Thursday's window");
    }
}
